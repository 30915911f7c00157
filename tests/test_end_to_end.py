"""The main job end to end, as scripts/demo.sh runs it, on the smoke profile.

Real Paddle training on the CPU (two runs of the smoke profile: the
reference lab's and the vendor's), real signing, the portal's HTTP upload
API on a live server, the Celery pipeline run eagerly, the verdict engine,
a certificate and its PDF read back with poppler's pdftotext.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from portal.celery import app as celery_app
from portal.certificates.services import issue_certificate, passing_submission
from portal.registry.models import Card
from portal.submissions.models import Submission

ROOT = Path(__file__).resolve().parent.parent
RULE_PACK = "smoke-2026.1"
VENDOR = {"slug": "demo-vendor", "card_model": "CPU demo card", "card_serial": "cpu-demo-0"}

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def agent(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def checked_agent(*args: str | Path) -> str:
    result = agent(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def run_and_pack(folder: Path, key: Path, vendor: str, serial: str) -> Path:
    checked_agent("run", "--profile", "smoke", "--out", folder / "run", "--vendor", vendor,
                  "--card-model", VENDOR["card_model"], "--card-serial", serial)
    checked_agent("bundle", folder / "run", "--key", key, "--out", folder / "run.bundle.tar")
    return folder / "run.bundle.tar"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """Keys and bundles for the reference lab and the vendor; the training runs once per module."""
    root = tmp_path_factory.mktemp("end-to-end")
    paths = {"reference_key": root / "reference.key", "vendor_key": root / "vendor.key"}
    for name in ("reference_key", "vendor_key"):
        checked_agent("keygen", "--out", paths[name])
    paths["reference"] = run_and_pack(root / "reference", paths["reference_key"], "reference-lab", "reference-cpu-0")
    paths["vendor"] = run_and_pack(root / "vendor", paths["vendor_key"], VENDOR["slug"], VENDOR["card_serial"])
    return paths


@pytest.fixture
def portal(settings, tmp_path, bundles, capsys) -> dict:
    """The demo's portal records, with the smoke pack's reference in place."""
    settings.MEDIA_ROOT = tmp_path / "media"
    celery_app.conf.task_always_eager = True
    call_command("demo_setup", vendor_key=Path(f"{bundles['vendor_key']}.pub"),
                 reference_key=Path(f"{bundles['reference_key']}.pub"), card_serial=VENDOR["card_serial"])
    setup = json.loads(capsys.readouterr().out)
    call_command("add_reference", str(bundles["reference"]), rule_pack=RULE_PACK, peak=["fp32=1.0"])
    return setup


def upload(live_server, bundle: Path, token: str, expected_exit: int = 0) -> dict:
    result = agent("upload", bundle, "--portal", live_server.url, "--token", token, "--json")
    assert result.returncode == expected_exit, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_demo_path_reaches_certificate_pdf(live_server, portal, bundles, tmp_path):
    reply = upload(live_server, bundles["vendor"], portal["token"])
    assert reply["state"] == "judged"

    submission = Submission.objects.select_related("report").get(pk=reply["id"])
    assert submission.state == Submission.State.JUDGED, submission.report.error_message
    verdict = submission.report.verdict
    assert verdict["rule_pack"]["name"] == RULE_PACK
    assert verdict["reference_kind"] == "cpu-demo"
    statuses = {criterion["id"]: criterion["status"] for criterion in verdict["criteria"]}
    for criterion_id in ("pretrain.loss_alignment", "pretrain.validation_loss", "pretrain.lambada", "sft.rouge", "lora.rouge"):
        assert statuses[criterion_id] == "pass", verdict
    assert verdict["tracks"]["pretraining"]["level"] == 1
    assert verdict["tracks"]["finetuning"]["level"] == 1

    card = Card.objects.get(vendor__slug=VENDOR["slug"], serial=VENDOR["card_serial"])
    staff = submission.uploaded_by.__class__.objects.get(username=portal["staff_user"])
    certificate = issue_certificate(submission=passing_submission(card, "pretraining", 1), track="pretraining", level=1, issued_by=staff)

    listing = requests.get(live_server.url + "/", timeout=30)
    assert certificate.number in listing.text
    pdf = requests.get(f"{live_server.url}/certificates/{certificate.number}/pdf/", timeout=60)
    assert pdf.headers["Content-Type"] == "application/pdf"
    pdf_path = tmp_path / "certificate.pdf"
    pdf_path.write_bytes(pdf.content)
    text = subprocess.run(["pdftotext", str(pdf_path), "-"], capture_output=True, text=True, check=True).stdout
    assert certificate.number in text
    assert "预训练" in text
    assert "CPU" in text


def test_tampered_bundle_rejected_and_kept(live_server, portal, bundles, tmp_path):
    tampered = tmp_path / "tampered.bundle.tar"
    shutil.copy(bundles["vendor"], tampered)
    data = bytearray(tampered.read_bytes())
    offset = data.index(b'"loss":') + 8
    data[offset] = ord("9") if data[offset] != ord("9") else ord("8")
    tampered.write_bytes(bytes(data))

    reply = upload(live_server, tampered, portal["token"], expected_exit=3)

    assert reply["state"] == "rejected"
    assert reply["error_code"] == "file_digest_mismatch"

    submission = Submission.objects.select_related("report").get(pk=reply["id"])
    assert submission.state == Submission.State.REJECTED
    assert submission.report.error_code == "file_digest_mismatch", submission.report.error_code
    assert Path(submission.bundle.path).read_bytes() == bytes(data)


def test_bundle_from_unknown_key_rejected(live_server, portal, bundles, tmp_path):
    stranger = tmp_path / "stranger.key"
    checked_agent("keygen", "--out", stranger)
    run_dir = tmp_path / "run"
    shutil.copytree(bundles["vendor"].parent / "run", run_dir)
    checked_agent("bundle", run_dir, "--key", stranger, "--out", tmp_path / "stranger.bundle.tar")

    reply = upload(live_server, tmp_path / "stranger.bundle.tar", portal["token"], expected_exit=3)

    assert reply["error_code"] == "signature_key_unknown"

    submission = Submission.objects.select_related("report").get(pk=reply["id"])
    assert submission.state == Submission.State.REJECTED
    assert submission.report.error_code == "signature_key_unknown", submission.report.error_code
