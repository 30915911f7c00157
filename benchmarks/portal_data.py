"""A throw-away portal database with N certified cards, shared by the portal benchmarks.

Each card gets one judged submission (a hand-made verdict that grants
pretraining and fine-tuning level 1) and a certificate issued through the
real service, so numbers, credentials and key figures are the real ones.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(var_dir: Path | None = None) -> Path:
    """Point the portal at a fresh SQLite database in `var_dir`, migrate it and return the folder."""
    var_dir = var_dir or Path(tempfile.mkdtemp(prefix="portal-bench-"))
    os.environ["PORTAL_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["PORTAL_LOG_LEVEL"] = "WARNING"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return var_dir


def verdict() -> dict:
    criteria = [
        {"id": "pretrain.throughput", "workload": "pretrain-llama", "metric": "throughput_ratio", "status": "pass",
         "measured": 41.2, "reference": 44.0, "bound": 0.2, "details": {}},
        {"id": "pretrain.loss", "workload": "pretrain-llama", "metric": "loss_window_alignment", "status": "pass",
         "measured": {"mean_relative_error": 0.004, "max_relative_error": 0.011},
         "bound": {"mean_relative_error_max": 0.02, "max_relative_error_max": 0.05}, "details": {}},
        {"id": "sft.rouge", "workload": "sft-llama", "metric": "rouge_difference", "status": "pass",
         "measured": {"rouge1": 41.3, "rougeL": 38.0}, "reference": {"rouge1": 41.0, "rougeL": 38.2}, "bound": 1.0, "details": {}},
    ]
    return {"rule_pack": {"name": "demo-2026.1", "sha256": "0" * 64}, "reference_kind": "cpu-demo", "criteria": criteria,
            "tracks": {"pretraining": {"level": 1, "gap": []}, "finetuning": {"level": 1, "gap": []}}}


def populate(cards: int) -> None:
    """Create `cards` vendors' cards, each with a judged submission and an issued certificate."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.db import transaction

    from portal.certificates.services import issue_certificate
    from portal.registry.models import Card, Vendor
    from portal.registry.roles import REVIEWERS, grant
    from portal.submissions.models import Submission, ValidationReport
    from portal.submissions.services import load_rule_packs

    rule_pack = next(pack for pack in load_rule_packs() if pack.name == "demo-2026.1")
    staff = get_user_model().objects.create_user("bench-staff", password="bench-password-1")
    grant(staff, REVIEWERS)
    for index in range(cards):
        vendor = Vendor.objects.create(slug=f"vendor-{index // 4}-{index}", name=f"厂商 {index // 4} Vendor")
        card = Card.objects.create(vendor=vendor, model=f"X{index:04d}", serial=f"sn-{index}", peak_tflops={"fp32": 2.0}, approved=True)
        data = f"bundle {index}".encode()
        with transaction.atomic():
            submission = Submission(vendor=vendor, card=card, rule_pack=rule_pack, sha256=hashlib.sha256(data).hexdigest(),
                                    size=len(data), state=Submission.State.JUDGED)
            submission.bundle.save("bundle.tar", ContentFile(data), save=False)
            submission.save()
            ValidationReport.objects.create(submission=submission, verdict=verdict())
        track = "pretraining" if index % 2 else "finetuning"
        issue_certificate(submission=submission, track=track, level=1, issued_by=staff)
