"""Validate again keeps every earlier report whole: stored rows, the audit link and the staff page."""

from django.urls import reverse

from portal.audit.models import AuditEntry
from portal.submissions.models import Submission, SupersededReport, ValidationReport

from .conftest import login
from .test_revalidation import reference, rejected, revalidate  # noqa: F401 (fixtures)


def judged_after_approval(client, staff, card, rejected, callbacks):
    """Approve the card and validate again, so the rejection becomes an earlier verdict and the bundle is judged."""
    card.approved = True
    card.save()
    login(client, staff)
    revalidate(client, rejected, callbacks)
    rejected.refresh_from_db()
    assert rejected.state == Submission.State.JUDGED
    return rejected


def test_rejection_kept_when_validated_again(client, staff, card, rejected, django_capture_on_commit_callbacks):
    old_report = ValidationReport.objects.get(submission=rejected)

    judged_after_approval(client, staff, card, rejected, django_capture_on_commit_callbacks)

    earlier = SupersededReport.objects.get(submission=rejected)
    assert earlier.state == "rejected"
    assert earlier.error_code == "card_not_approved"
    assert earlier.error_params == old_report.error_params
    assert earlier.judged_at == old_report.created_at
    assert earlier.superseded_by == staff
    assert earlier.superseded_at >= old_report.created_at
    entry = AuditEntry.objects.get(action="submission.revalidation_requested")
    assert entry.data["superseded_report"] == earlier.pk


def test_full_verdict_kept_with_rule_pack(client, staff, card, rule_pack, rejected, django_capture_on_commit_callbacks):
    judged = judged_after_approval(client, staff, card, rejected, django_capture_on_commit_callbacks)
    verdict = judged.report.verdict
    judged_at = judged.report.created_at

    revalidate(client, judged, django_capture_on_commit_callbacks)

    newest, oldest = SupersededReport.objects.filter(submission=judged)
    assert newest.verdict == verdict
    assert newest.state == "judged"
    assert newest.judged_at == judged_at
    assert newest.rule_pack == rule_pack
    assert newest.rule_pack_sha256 == rule_pack.sha256
    assert oldest.error_code == "card_not_approved"
    assert newest.superseded_at >= oldest.superseded_at
    judged.refresh_from_db()
    assert judged.report.verdict["criteria"]
    assert ValidationReport.objects.filter(submission=judged).count() == 1


def test_staff_page_lists_earlier_verdicts(client, staff, card, rejected, django_capture_on_commit_callbacks):
    judged = judged_after_approval(client, staff, card, rejected, django_capture_on_commit_callbacks)
    revalidate(client, judged, django_capture_on_commit_callbacks)
    newest, oldest = SupersededReport.objects.filter(submission=judged)
    client.cookies["django_language"] = "en"

    page = client.get(reverse("submission-detail", args=[judged.pk])).content.decode()

    assert "Earlier verdicts" in page
    assert page.index(f'id="earlier-verdict-{newest.pk}"') < page.index(f'id="earlier-verdict-{oldest.pk}"')
    assert "card_not_approved" in page
    assert newest.verdict["criteria"][0]["id"] in page[page.index(f'id="earlier-verdict-{newest.pk}"'):]
    assert page.count("Replaced by") == 2


def test_chinese_staff_page_heading(client, staff, card, rejected, django_capture_on_commit_callbacks):
    judged = judged_after_approval(client, staff, card, rejected, django_capture_on_commit_callbacks)
    client.cookies["django_language"] = "zh-hans"

    page = client.get(reverse("submission-detail", args=[judged.pk])).content.decode()

    assert "早先的评判结果" in page
    assert "Earlier verdicts" not in page


def test_vendor_page_shows_earlier_rejection_only(client, staff, owner, card, rejected, django_capture_on_commit_callbacks):
    """The vendor sees why the submission was rejected before, without the staff's names and stored JSON."""
    judged = judged_after_approval(client, staff, card, rejected, django_capture_on_commit_callbacks)
    client.cookies["django_language"] = "en"
    login(client, owner)

    page = client.get(reverse("submission-detail", args=[judged.pk])).content.decode()

    earlier = SupersededReport.objects.get(submission=judged)
    assert earlier.state == "rejected"
    assert "Earlier verdicts" in page
    assert f"earlier-verdict-{earlier.pk}" in page
    assert "card_not_approved" in page
    assert "Replaced by" not in page
    assert "Stored JSON" not in page


def test_vendor_page_hides_earlier_judged_verdict(client, staff, owner, card, rejected, django_capture_on_commit_callbacks):
    judged = judged_after_approval(client, staff, card, rejected, django_capture_on_commit_callbacks)
    revalidate(client, judged, django_capture_on_commit_callbacks)
    client.cookies["django_language"] = "en"
    login(client, owner)

    page = client.get(reverse("submission-detail", args=[judged.pk])).content.decode()

    judged_earlier = SupersededReport.objects.get(submission=judged, state="judged")
    assert f"earlier-verdict-{judged_earlier.pk}" not in page
