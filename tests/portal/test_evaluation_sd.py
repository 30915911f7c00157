"""Blind image pairs of the Stable Diffusion criteria, built on their own after a real smoke-sd run is judged.

One `python -m agent run --profile smoke-sd` (about 30 s of CPU) gives both
sides: the reference lab signs it as is, and the vendor's copy has three
inference images changed by one pixel, so those pairs need reviewers while
the other pairs are byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from certification.bundle import write_bundle
from certification.signing import generate_key
from portal.audit.models import AuditEntry
from portal.evaluation.models import EvaluationSet
from portal.evaluation.services import build_sets_after_verdict, pass_rule, tally
from portal.evaluation.tasks import build_pairs_after_verdict
from portal.registry.models import SigningKey
from portal.registry.services import register_signing_key
from portal.submissions.pipeline import validate_submission
from portal.submissions.services import add_reference, load_rule_packs, receive_bundle

from .conftest import login

REPO = Path(__file__).resolve().parents[2]
CHANGED_PROMPTS = ["en-1", "en-4", "en-7"]

pytestmark = pytest.mark.slow


def _set_run_owner(run: Path, vendor: str, serial: str) -> None:
    run_json = json.loads((run / "run.json").read_text(encoding="utf-8"))
    run_json.update(vendor=vendor, card={"model": "X100", "serial": serial})
    (run / "run.json").write_text(json.dumps(run_json, ensure_ascii=False), encoding="utf-8")


def _change_one_pixel(folder: Path, prompt_ids: list[str]) -> None:
    """Flip one pixel of each named image and update its sha256 in images.jsonl."""
    rows = [json.loads(line) for line in (folder / "images.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        if row["prompt_id"] not in prompt_ids:
            continue
        path = folder / row["file"]
        image = Image.open(path)
        image.putpixel((0, 0), tuple(255 - value for value in image.getpixel((0, 0))) if image.mode != "L" else 255 - image.getpixel((0, 0)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue())
        row["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (folder / "images.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def sd_bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd-pairs")
    run = root / "run"
    completed = subprocess.run([sys.executable, "-m", "agent", "run", "--profile", "smoke-sd", "--out", str(run)],
                               cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode in (0, 4), completed.stderr[-3000:]

    keys = {"lab": generate_key(), "vendor": generate_key(), "since": datetime.now(timezone.utc) - timedelta(minutes=1)}
    reference_run, vendor_run = root / "reference-run", root / "vendor-run"
    shutil.copytree(run, reference_run)
    shutil.copytree(run, vendor_run)
    _set_run_owner(reference_run, "reference-lab", "ref-0")
    _set_run_owner(vendor_run, "acme", "sn-1")
    _change_one_pixel(vendor_run / "workloads" / "sd-infer-digits", CHANGED_PROMPTS)
    keys["reference"] = write_bundle(reference_run, root / "reference.tar", keys["lab"]).path
    keys["bundle"] = write_bundle(vendor_run, root / "vendor.tar", keys["vendor"]).path
    return keys


@pytest.fixture
def sd_submission(sd_bundles, vendor, reference_lab, card, owner, django_capture_on_commit_callbacks):
    for key_vendor, key in ((reference_lab, sd_bundles["lab"]), (vendor, sd_bundles["vendor"])):
        register_signing_key(key_vendor, key.public_pem())
        SigningKey.objects.filter(key_id=key.key_id).update(valid_from=sd_bundles["since"])
    rule_pack = next(pack for pack in load_rule_packs() if pack.name == "smoke-2026.1")
    add_reference(sd_bundles["reference"], rule_pack=rule_pack, peak_tflops={"fp32": 2.0})
    upload = SimpleUploadedFile("run.tar", sd_bundles["bundle"].read_bytes(), content_type="application/x-tar")
    submission, _created = receive_bundle(vendor=vendor, upload=upload, actor=owner)
    # The test's transaction never commits; run the validation and what it queues on commit.
    with django_capture_on_commit_callbacks(execute=True):
        validate_submission(submission.pk)
    submission.refresh_from_db()
    return submission


def test_image_pairs_built_after_verdict(sd_submission):
    sets = {item.criterion_id: item for item in EvaluationSet.objects.filter(submission=sd_submission)}

    assert sd_submission.state == "judged"
    assert set(sets) == {"sd-sft.human", "sd-infer.human"}
    assert {item.media for item in sets.values()} == {"image"}
    assert sets["sd-sft.human"].pairs.count() == 20
    assert sets["sd-sft.human"].pairs.filter(identical=False).count() == 0
    assert sorted(sets["sd-infer.human"].pairs.filter(identical=False).values_list("prompt_id", flat=True)) == CHANGED_PROMPTS
    assert AuditEntry.objects.filter(action="evaluation.pairs_built", actor=None).count() == 2


def test_automatic_build_is_idempotent(sd_submission):
    before = list(EvaluationSet.objects.values_list("pk", "seed"))

    assert build_sets_after_verdict(sd_submission.pk) == []
    assert build_pairs_after_verdict.delay(sd_submission.pk).get() == 0
    assert list(EvaluationSet.objects.values_list("pk", "seed")) == before
    assert AuditEntry.objects.filter(action="evaluation.pairs_built").count() == 2


def test_button_rebuilds_missing_set(client, sd_submission, staff):
    EvaluationSet.objects.get(criterion_id="sd-infer.human").delete()
    page = login(client, staff).get(reverse("evaluation-index")).content.decode()
    assert "sd-infer.human" in page

    response = client.post(reverse("evaluation-build", args=[sd_submission.pk]))

    assert response.status_code == 302
    rebuilt = EvaluationSet.objects.get(criterion_id="sd-infer.human")
    assert rebuilt.pairs.filter(identical=False).count() == len(CHANGED_PROMPTS)
    assert AuditEntry.objects.filter(action="evaluation.pairs_built", actor=staff).count() == 1


def test_review_page_shows_images(client, sd_submission, staff):
    evaluation_set = EvaluationSet.objects.get(criterion_id="sd-infer.human")

    page = login(client, staff).get(reverse("evaluation-review", args=[evaluation_set.pk])).content.decode()

    assert page.count('src="data:image/png;base64,') == 2
    assert "a handwritten digit" in page
    assert "acme" not in page.lower()


def test_sd_pass_rule_uses_sd_settings(sd_submission):
    evaluation_set = EvaluationSet.objects.get(criterion_id="sd-infer.human")

    assert pass_rule(evaluation_set) == {"gsb_min": -0.05, "min_pairs": 20, "alpha": 0.05}
    assert tally(evaluation_set).unjudged == len(CHANGED_PROMPTS)
    assert tally(evaluation_set).identical == 20 - len(CHANGED_PROMPTS)
