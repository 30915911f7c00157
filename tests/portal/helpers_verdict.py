"""Hand-made verdicts and judged submissions, for tests that do not run the verdict engine."""

import hashlib

from django.core.files.base import ContentFile
from django.db import transaction

from portal.submissions.models import Submission, ValidationReport


def verdict(pretraining_level: int = 1, finetuning_level: int = 1) -> dict:
    return {
        "rule_pack": {"name": "demo-2026.1", "sha256": "0" * 64},
        "reference_kind": "cpu-demo",
        "criteria": [
            {"id": "pretrain.throughput", "workload": "pretrain-llama", "metric": "throughput_ratio", "status": "pass",
             "measured": 0.93, "reference": 1.0, "bound": 0.2,
             "explanation": {"zh": "吞吐比 <b>达标</b>", "en": "throughput ratio <b>met</b>"}, "hint": {"zh": "", "en": ""}, "details": {}},
            {"id": "sft.rouge", "workload": "sft-llama", "metric": "rouge_difference", "status": "fail",
             "measured": 2.5, "reference": 0.0, "bound": 1.0,
             "explanation": {"zh": "ROUGE 差距过大", "en": "ROUGE differs too much"}, "hint": {"zh": "检查解码", "en": "check decoding"}, "details": {}},
        ],
        "tracks": {"pretraining": {"level": pretraining_level, "gap": []}, "finetuning": {"level": finetuning_level, "gap": []}},
    }


def judged_submission(vendor, card, rule_pack, payload: dict, *, label: str = "a") -> Submission:
    data = f"bundle {label}".encode()
    with transaction.atomic():
        submission = Submission(
            vendor=vendor, card=card, rule_pack=rule_pack, sha256=hashlib.sha256(data).hexdigest(),
            size=len(data), state=Submission.State.JUDGED,
        )
        submission.bundle.save("bundle.tar", ContentFile(data), save=False)
        submission.save()
        ValidationReport.objects.create(submission=submission, verdict=payload)
    return submission
