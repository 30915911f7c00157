"""The validation task's soft time limit: the submission ends rejected with one report, never half-written.

The limit is raised where a worker's timer would raise it: in the verdict
(outside any transaction) or inside the transaction that stores the report.
tests/portal/test_worker.py lets a real worker's timer fire it.
"""

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from portal.audit.models import AuditEntry
from portal.submissions import pipeline
from portal.submissions.models import ValidationReport
from portal.submissions.tasks import validate_submission

from .conftest import build_bundle
from .test_pipeline import FakeVerdict, reference  # noqa: F401  (fixture)
from .test_pipeline import submit


def raise_time_limit(*args, **kwargs):
    raise SoftTimeLimitExceeded()


@pytest.fixture
def limit_in_verdict(monkeypatch):
    monkeypatch.setattr(pipeline, "load_judge", lambda: raise_time_limit)


@pytest.fixture
def limit_while_storing(monkeypatch):
    """Judge normally, then raise the limit after the report row is written, before its transaction commits."""
    real_record = pipeline.record

    def record_then_raise(action, *args, **kwargs):
        real_record(action, *args, **kwargs)
        if action == "submission.judged":
            raise SoftTimeLimitExceeded()

    verdict = {"rule_pack": {}, "reference_kind": "cpu-demo", "criteria": [], "tracks": {"pretraining": {"level": 1, "gap": []}}}
    monkeypatch.setattr(pipeline, "load_judge", lambda: lambda *args, **kwargs: FakeVerdict(verdict))
    monkeypatch.setattr(pipeline, "record", record_then_raise)


@pytest.mark.parametrize("where", ["limit_in_verdict", "limit_while_storing"])
def test_soft_limit_rejects_the_submission(request, settings, tmp_path, vendor, owner, card, vendor_key, reference, where,  # noqa: F811
                                            django_capture_on_commit_callbacks):
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 77
    request.getfixturevalue(where)
    submission = submit(build_bundle(tmp_path, vendor_key), vendor, owner, django_capture_on_commit_callbacks)

    assert submission.state == "rejected"
    report = ValidationReport.objects.get(submission=submission)
    assert report.error_code == "validation_timed_out"
    assert report.verdict is None
    assert report.error_params == {"value": 77}
    assert "77" in report.error_detail
    actions = AuditEntry.objects.filter(object_id=str(submission.pk), object_type="submissions.submission").values_list("action", flat=True)
    assert sorted(actions) == ["submission.received", "submission.rejected", "submission.validating"]


def test_task_run_again_after_the_limit_changes_nothing(tmp_path, vendor, owner, card, vendor_key, reference, limit_in_verdict,  # noqa: F811
                                                         django_capture_on_commit_callbacks):
    submission = submit(build_bundle(tmp_path, vendor_key), vendor, owner, django_capture_on_commit_callbacks)
    assert validate_submission.apply(args=[submission.pk]).get() == "rejected"
    assert ValidationReport.objects.filter(submission=submission).count() == 1
