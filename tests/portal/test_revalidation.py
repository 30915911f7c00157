"""Staff send a finished submission through validation again: state machine, audit entry and permissions."""

import pytest
from django.urls import reverse

from portal.audit.models import AuditEntry
from portal.submissions.errors import SubmissionError
from portal.submissions.models import Submission, ValidationReport
from portal.submissions.services import add_reference, request_revalidation

from .conftest import build_bundle, login
from .test_pipeline import submit


@pytest.fixture
def reference(tmp_path, rule_pack, lab_key):
    path = build_bundle(tmp_path, lab_key, name="reference.tar", vendor="reference-lab", model="CPU", serial="ref-0")
    return add_reference(path, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})[0]


@pytest.fixture
def rejected(tmp_path, vendor, owner, card, vendor_key, reference, django_capture_on_commit_callbacks):
    """A submission rejected because its card's peaks were not approved yet."""
    card.approved = False
    card.save()
    submission = submit(build_bundle(tmp_path, vendor_key), vendor, owner, django_capture_on_commit_callbacks)
    assert submission.report.error_code == "card_not_approved"
    return submission


def revalidate(client, submission, callbacks):
    with callbacks(execute=True):
        return client.post(reverse("submission-revalidate", args=[submission.pk]))


def test_staff_revalidate_after_card_approval(client, staff, card, rejected, django_capture_on_commit_callbacks):
    card.approved = True
    card.save()
    login(client, staff)
    response = revalidate(client, rejected, django_capture_on_commit_callbacks)

    assert response.status_code == 302
    rejected.refresh_from_db()
    assert rejected.state in (Submission.State.JUDGED, Submission.State.REJECTED)
    assert rejected.report.error_code != "card_not_approved"
    assert ValidationReport.objects.filter(submission=rejected).count() == 1
    entry = AuditEntry.objects.get(action="submission.revalidation_requested")
    assert entry.actor == staff
    assert entry.data["previous_state"] == "rejected"
    assert entry.data["previous_error_code"] == "card_not_approved"
    assert entry.remote_addr == "127.0.0.1"


def test_revalidation_audit_order(client, administrator, rejected, django_capture_on_commit_callbacks):
    login(client, administrator)
    revalidate(client, rejected, django_capture_on_commit_callbacks)

    actions = list(AuditEntry.objects.filter(object_id=str(rejected.pk), object_type="submissions.submission")
                   .order_by("pk").values_list("action", flat=True))
    assert actions[-3:] == ["submission.revalidation_requested", "submission.validating", "submission.rejected"]


@pytest.mark.parametrize("persona", ["anonymous", "owner", "outsider"])
def test_vendors_and_visitors_cannot_revalidate(request, client, rejected, persona, django_capture_on_commit_callbacks):
    if persona != "anonymous":
        login(client, request.getfixturevalue(persona))
    response = revalidate(client, rejected, django_capture_on_commit_callbacks)

    assert response.status_code == (302 if persona == "anonymous" else 403)
    if persona == "anonymous":
        assert reverse("login") in response["Location"]
    assert not AuditEntry.objects.filter(action="submission.revalidation_requested").exists()
    rejected.refresh_from_db()
    assert rejected.state == Submission.State.REJECTED


def test_revalidate_needs_post(client, staff, rejected):
    login(client, staff)
    assert client.get(reverse("submission-revalidate", args=[rejected.pk])).status_code == 405


@pytest.mark.parametrize("state", [Submission.State.RECEIVED, Submission.State.VALIDATING])
def test_unfinished_submission_is_left_alone(staff, rejected, state):
    Submission.objects.filter(pk=rejected.pk).update(state=state)
    with pytest.raises(SubmissionError) as raised:
        request_revalidation(rejected.pk, actor=staff)
    assert raised.value.code == "revalidation_in_progress"
    assert ValidationReport.objects.filter(submission=rejected).exists()


def test_certified_submission_is_left_alone(client, staff, card, rule_pack, rejected, django_capture_on_commit_callbacks):
    """The certificate row is written directly: issuing one needs a passing verdict, which this bundle lacks."""
    from django.utils import timezone

    from portal.certificates.models import Certificate

    Submission.objects.filter(pk=rejected.pk).update(state=Submission.State.JUDGED)
    Certificate.objects.create(number="TEST-0001", submission=rejected, card=card, track="pretraining", level=1,
                               rule_pack=rule_pack, issued_at=timezone.now(), issued_by=staff)
    login(client, staff)
    client.cookies["django_language"] = "en"
    response = revalidate(client, rejected, django_capture_on_commit_callbacks)

    page = client.get(response["Location"]).content.decode()
    assert "revalidation_certified" in page
    assert "Revoke the certificate" in page
    assert ValidationReport.objects.filter(submission=rejected).exists()


def test_button_only_for_staff(client, staff, owner, rejected):
    url = reverse("submission-revalidate", args=[rejected.pk])
    login(client, owner)
    assert url not in client.get(reverse("submission-detail", args=[rejected.pk])).content.decode()
    login(client, staff)
    assert url in client.get(reverse("submission-detail", args=[rejected.pk])).content.decode()


@pytest.fixture(scope="module")
def human_bundles(tmp_path_factory):
    from .helpers_gsb import build_human_bundles

    return build_human_bundles(tmp_path_factory.mktemp("human"))


def test_revalidation_keeps_signed_off_human_results(human_bundles, vendor, reference_lab, card, owner, staff,
                                                     django_capture_on_commit_callbacks):
    """The human verdict signed off before is judged again on the new report, not left stale."""
    from portal.evaluation.services import build_sets, effective_verdict, record_judgement, sign_off

    from .conftest import PASSWORD
    from .helpers_gsb import HUMAN_CRITERION, judged_human_submission

    submission = judged_human_submission(human_bundles, vendor=vendor, reference_lab=reference_lab, owner=owner)
    evaluation_set = build_sets(submission, actor=staff)[0]
    for pair in evaluation_set.pairs.filter(identical=False):
        record_judgement(pair, staff, pair.to_vendor_view("same"))
    sign_off(evaluation_set, signer=staff, password=PASSWORD, statement="checked")
    assert submission.human_verdicts.count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        request_revalidation(submission.pk, actor=staff)

    submission.refresh_from_db()
    assert submission.state == Submission.State.JUDGED
    assert submission.human_verdicts.count() == 2
    assert submission.human_verdicts.first().created_at >= submission.report.created_at
    human = next(item for item in effective_verdict(submission)["criteria"] if item["id"] == HUMAN_CRITERION)
    assert human["status"] == "pass"
    assert AuditEntry.objects.filter(action="submission.rejudged", object_id=str(submission.pk)).count() == 2
