"""`python -m agent check` gives the portal's verdict for the same bundle, because it runs the same code.

One real smoke run on the CPU, started with a run ticket the portal issued:
the portal verifies the bundle, accepts the ticket and judges it; the agent
checks the same bundle against the same reference bundle with the same peaks.
The two verdicts must be equal, key for key. Human evaluation is not part of
either: the portal adds it only after staff judge the pairs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from portal.registry.models import Card, Membership, Vendor
from portal.registry.services import register_signing_key
from portal.submissions.models import RulePack, Submission
from portal.submissions.services import add_reference, load_rule_packs, receive_bundle
from portal.tickets.models import RunTicket
from portal.tickets.services import issue_ticket, ticket_file

ROOT = Path(__file__).resolve().parents[2]
PEAK = "fp32=1.0"

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def agent(*args, accept=(0,)) -> str:
    result = subprocess.run([sys.executable, "-m", "agent", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode in accept, result.stderr[-3000:]
    return result.stdout


def make_key(folder: Path, owner: Vendor) -> Path:
    path = folder / f"{owner.slug}.key"
    agent("keygen", "--out", path)
    with transaction.atomic():
        register_signing_key(owner, Path(f"{path}.pub").read_text())
    return path


def reference_copy(run_dir: Path, out: Path) -> Path:
    """The same records as the reference lab's run: vendor, card and ticket changed in run.json."""
    shutil.copytree(run_dir, out)
    run = json.loads((out / "run.json").read_text())
    run.update(vendor="reference-lab", card={"model": "CPU reference", "serial": "reference-cpu-0"}, ticket=None)
    (out / "run.json").write_text(json.dumps(run, indent=2))
    return out


def test_check_verdict_equals_portal_verdict(tmp_path, settings, django_capture_on_commit_callbacks):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PORTAL_TICKET_KEY_PATH = tmp_path / "ticket.key"
    load_rule_packs()
    pack = RulePack.objects.get(name="smoke-2026.1")
    vendor = Vendor.objects.create(slug="demo-vendor", name="Demo Vendor")
    lab = Vendor.objects.create(slug="reference-lab", name="Reference lab", is_reference_lab=True)
    card = Card.objects.create(vendor=vendor, model="CPU demo card", serial="cpu-demo-0", peak_tflops={"fp32": 1.0}, approved=True)
    member = get_user_model().objects.create_user(username="engineer", password="x")
    Membership.objects.create(vendor=vendor, user=member)
    vendor_key, lab_key = make_key(tmp_path, vendor), make_key(tmp_path, lab)

    ticket = issue_ticket(vendor=vendor, card=card, track="pretraining", level=1, rule_pack=pack, actor=member)
    (tmp_path / "ticket.json").write_bytes(ticket_file(ticket))
    # Exit 1 means a workload failed; its records still go into the bundle and both verdicts must agree on them.
    agent("run", "--profile", "smoke", "--out", tmp_path / "vendor", "--ticket", tmp_path / "ticket.json", accept=(0, 1))
    agent("bundle", tmp_path / "vendor", "--key", vendor_key, "--out", tmp_path / "vendor.tar")
    agent("bundle", reference_copy(tmp_path / "vendor", tmp_path / "reference"), "--key", lab_key, "--out", tmp_path / "reference.tar")
    add_reference(tmp_path / "reference.tar", rule_pack=pack, peak_tflops={"fp32": 1.0})

    with django_capture_on_commit_callbacks(execute=True):
        upload = SimpleUploadedFile("vendor.tar", (tmp_path / "vendor.tar").read_bytes(), content_type="application/x-tar")
        submission, _created = receive_bundle(vendor=vendor, upload=upload, actor=member)
    submission = Submission.objects.select_related("report").get(pk=submission.pk)
    checked = json.loads(agent(
        "check", tmp_path / "vendor.tar", "--reference", tmp_path / "reference.tar",
        "--public-key", f"{vendor_key}.pub", "--public-key", f"{lab_key}.pub",
        "--peak", PEAK, "--reference-peak", PEAK, "--json", accept=(0, 4),
    ))

    assert submission.state == Submission.State.JUDGED, submission.report.error_code
    assert RunTicket.objects.get(pk=ticket.pk).used_by == submission
    assert checked == submission.report.verdict
    assert "pass" in {criterion["status"] for criterion in checked["criteria"]}
