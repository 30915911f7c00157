"""A rule pack with human evaluation enabled, and real signed bundles judged under it.

The pack is the demo pack's text with `human_evaluation.enabled: true`, a
small `min_pairs` and a `human_gsb` criterion on the SFT workload. The
vendor's predictions differ from the reference's only in letter case and
punctuation on some rows, so ROUGE (which ignores both) still passes while
those pairs are not byte-identical and need reviewers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from certification.bundle import write_bundle
from certification.rulepack import load_rule_pack, parse_rule_pack
from certification.signing import generate_key
from portal.registry.models import SigningKey
from portal.registry.services import register_signing_key
from portal.submissions.models import RulePack, Submission
from portal.submissions.pipeline import validate_submission
from portal.submissions.services import add_reference, receive_bundle
from tests.certification.runfolder import build_run

REFERENCE_PREDICTIONS = [
    ("sft_zh_dev", "今天天气很好，我们去公园散步。", "今天天气很好，我们去公园散步吧。"),
    ("sft_zh_dev", "学习机器学习需要数学基础。", "学习机器学习需要一定的数学基础。"),
    ("sft_en_dev", "The cat sat on the mat in 2024.", "The cat sat on the mat in 2024."),
    ("sft_en_dev", "Paris is the capital of France.", "The capital of France is Paris."),
    ("sft_en_dev", "Water boils at 100 degrees.", "Water boils at 100 degrees Celsius."),
    ("sft_en_dev", "Tokyo is a large city.", "Tokyo is a very large city."),
]
# Rows 2, 3 and 4 differ from the reference in case or punctuation only.
VENDOR_PREDICTIONS = [
    REFERENCE_PREDICTIONS[0],
    REFERENCE_PREDICTIONS[1],
    ("sft_en_dev", "the cat sat on the mat in 2024!", "The cat sat on the mat in 2024."),
    ("sft_en_dev", "PARIS is the capital of France", "The capital of France is Paris."),
    ("sft_en_dev", "Water boils at 100 degrees...", "Water boils at 100 degrees Celsius."),
    REFERENCE_PREDICTIONS[5],
]
DIFFERING_POSITIONS = [3, 4, 5]
HUMAN_CRITERION = "sft.human"


def human_pack_text() -> str:
    text = load_rule_pack("demo-2026.1").text
    text = text.replace("id: demo\n", "id: demo-human\n", 1)
    text = text.replace("  human_evaluation:\n    enabled: false\n", "  human_evaluation:\n    enabled: true\n    min_pairs: 6\n    gsb_min: -0.05\n    alpha: 0.05\n", 1)
    text = text.replace("      - {id: sft.rouge, metric: rouge_difference}\n", f"      - {{id: sft.rouge, metric: rouge_difference}}\n      - {{id: {HUMAN_CRITERION}, metric: human_gsb}}\n", 1)
    assert "enabled: true" in text
    assert HUMAN_CRITERION in text
    return text


def store_human_pack() -> RulePack:
    parsed = parse_rule_pack(human_pack_text().encode("utf-8"))
    stored, _created = RulePack.objects.get_or_create(
        name=parsed.name, defaults={"sha256": parsed.sha256, "text": parsed.text, "reference_kind": parsed.reference_kind}
    )
    return stored


def _bundle(root: Path, key, predictions, vendor: str, serial: str) -> Path:
    pack = parse_rule_pack(human_pack_text().encode("utf-8"))
    run = build_run(root / "run", pack, workloads=("sft-llama", "lora-llama"), predictions=predictions)
    run_json = json.loads((run / "run.json").read_text(encoding="utf-8"))
    run_json.update(vendor=vendor, card={"model": "X100", "serial": serial})
    (run / "run.json").write_text(json.dumps(run_json, ensure_ascii=False), encoding="utf-8")
    return write_bundle(run, root / "bundle.tar", key).path


@dataclass(frozen=True)
class HumanBundles:
    """Keys and signed bundles, built once per test session because they never change."""

    lab_key: object
    vendor_key: object
    reference: Path
    vendor: Path
    keys_valid_from: datetime


def build_human_bundles(root: Path, vendor_slug: str = "acme") -> HumanBundles:
    keys_valid_from = datetime.now(timezone.utc) - timedelta(minutes=1)
    lab_key, vendor_key = generate_key(), generate_key()
    reference = _bundle(root / "reference", lab_key, REFERENCE_PREDICTIONS, "reference-lab", "ref-0")
    vendor = _bundle(root / "vendor", vendor_key, VENDOR_PREDICTIONS, vendor_slug, "sn-1")
    return HumanBundles(lab_key, vendor_key, reference, vendor, keys_valid_from)


def register_bundle_keys(bundles: HumanBundles, *, vendor, reference_lab) -> None:
    with transaction.atomic():
        for key_vendor, key in ((reference_lab, bundles.lab_key), (vendor, bundles.vendor_key)):
            register_signing_key(key_vendor, key.public_pem())
            # The bundles were signed before this test registered the keys, with keys that existed then.
            SigningKey.objects.filter(key_id=key.key_id).update(valid_from=bundles.keys_valid_from)


def judged_human_submission(bundles: HumanBundles, *, vendor, reference_lab, owner) -> Submission:
    """Register the keys, store the pack and its reference, upload the vendor's bundle and validate it."""
    register_bundle_keys(bundles, vendor=vendor, reference_lab=reference_lab)
    rule_pack = store_human_pack()
    add_reference(bundles.reference, rule_pack=rule_pack, peak_tflops={"fp32": 2.0})
    upload = SimpleUploadedFile("run.tar", bundles.vendor.read_bytes(), content_type="application/x-tar")
    submission, _created = receive_bundle(vendor=vendor, upload=upload, actor=owner)
    # The test's transaction never commits, so run the validation that on_commit would enqueue.
    validate_submission(submission.pk)
    submission.refresh_from_db()
    return submission
