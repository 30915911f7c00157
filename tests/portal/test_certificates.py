"""Issuing certificates: only staff, only when the verdict grants the level, one number each."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from portal.audit.models import AuditEntry
from portal.certificates.errors import CertificateError
from portal.certificates.models import Certificate
from portal.certificates.services import issue_certificate, revoke_certificate

from .conftest import login
from .helpers_verdict import judged_submission, verdict


@pytest.fixture
def passing(vendor, card, rule_pack):
    return judged_submission(vendor, card, rule_pack, verdict(pretraining_level=1, finetuning_level=0))


def test_issue_when_verdict_grants(passing, staff):
    certificate = issue_certificate(submission=passing, track="pretraining", level=1, issued_by=staff)
    assert certificate.number.startswith("PPLM-")
    assert certificate.card == passing.card
    assert certificate.key_figures[0]["id"] == "pretrain.throughput"
    assert AuditEntry.objects.filter(action="certificate.issued", object_id=str(certificate.pk)).exists()


@pytest.mark.parametrize("track, level, code", [
    ("finetuning", 1, "verdict_not_passing"),
    ("pretraining", 2, "verdict_not_passing"),
    ("cooking", 1, "track_unknown"),
    ("pretraining", 4, "level_invalid"),
])
def test_issue_refused(passing, staff, track, level, code):
    with pytest.raises(CertificateError) as raised:
        issue_certificate(submission=passing, track=track, level=level, issued_by=staff)
    assert raised.value.code == code
    assert Certificate.objects.count() == 0


def test_issue_refused_for_non_staff(passing, owner):
    with pytest.raises(CertificateError) as raised:
        issue_certificate(submission=passing, track="pretraining", level=1, issued_by=owner)
    assert raised.value.code == "not_staff"


def test_issue_refused_for_unjudged(passing, staff):
    passing.state = "rejected"
    passing.save()
    with pytest.raises(CertificateError) as raised:
        issue_certificate(submission=passing, track="pretraining", level=1, issued_by=staff)
    assert raised.value.code == "submission_not_judged"


def test_unjudged_refusal_names_state(passing, staff):
    from django.utils import translation

    passing.state = "validating"
    passing.save()
    with pytest.raises(CertificateError) as raised:
        issue_certificate(submission=passing, track="pretraining", level=1, issued_by=staff)
    with translation.override("zh-hans"):
        assert f"提交 {passing.pk} 的状态是“校验中”，尚未完成评判。" in raised.value.detail
    with translation.override("en"):
        assert f"Submission {passing.pk} is in state validating, not judged." in raised.value.detail


def test_issue_twice_refused_until_revoked(passing, staff):
    first = issue_certificate(submission=passing, track="pretraining", level=1, issued_by=staff)
    with pytest.raises(CertificateError) as raised:
        issue_certificate(submission=passing, track="pretraining", level=1, issued_by=staff)
    assert raised.value.code == "already_certified"
    revoke_certificate(first, reason="test", revoked_by=staff)
    second = issue_certificate(submission=passing, track="pretraining", level=1, issued_by=staff)
    assert second.number != first.number


def test_numbers_are_sequential(vendor, card, rule_pack, staff):
    numbers = []
    for index, track in enumerate(["pretraining", "finetuning"]):
        submission = judged_submission(vendor, card, rule_pack, verdict(1, 1), label=str(index))
        numbers.append(issue_certificate(submission=submission, track=track, level=1, issued_by=staff).number)
    assert numbers[0] != numbers[1]
    assert int(numbers[1][-5:]) == int(numbers[0][-5:]) + 1


def test_staff_page_issues(client, passing, staff):
    response = login(client, staff).post(reverse("certificate-issue", args=[passing.pk]), {"track": "pretraining", "level": 1})
    certificate = Certificate.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("certificate-detail", args=[certificate.number])


def test_staff_page_refuses_failing_level(client, passing, staff):
    response = login(client, staff).post(reverse("certificate-issue", args=[passing.pk]), {"track": "finetuning", "level": 1}, follow=True)
    assert Certificate.objects.count() == 0
    assert "verdict_not_passing" in response.content.decode()


@pytest.mark.parametrize("language, expected", [
    ("en", "Level: Select a valid choice. 4 is not one of the available choices."),
    ("zh-hans", "等级：选择一个有效的选项。 4 不在可用的选项中。"),
])
def test_invalid_issue_form_names_field_label(client, passing, staff, language, expected):
    client.cookies["django_language"] = language

    response = login(client, staff).post(reverse("certificate-issue", args=[passing.pk]), {"track": "pretraining", "level": 4}, follow=True)

    page = response.content.decode()
    assert expected in page
    assert "* level" not in page
    assert Certificate.objects.count() == 0


@pytest.mark.parametrize("language, expected", [
    ("zh-hans", "提交 {pk} 的评判结果授予调优方向等级 0，而不是等级 1。"),
    ("en", "The verdict of submission {pk} grants fine-tuning level 0, not level 1."),
])
def test_refusal_names_track(client, passing, staff, language, expected):
    client.cookies["django_language"] = language

    response = login(client, staff).post(reverse("certificate-issue", args=[passing.pk]), {"track": "finetuning", "level": 1}, follow=True)

    page = response.content.decode()
    assert expected.format(pk=passing.pk) in page
    assert "finetuning level" not in page


def test_command_refusal_names_track(passing, staff):
    from django.utils import translation

    with translation.override("zh-hans"), pytest.raises(CommandError) as raised:
        call_command("issue_certificate", "--card", str(passing.card_id), "--track", "inference", "--level", "1",
                     "--staff-user", staff.get_username())
    assert "授予推理方向等级 1 的提交" in str(raised.value)
    assert "inference" not in str(raised.value).split("[")[0]


@pytest.mark.parametrize("persona, status", [("owner", 403), ("outsider", 403)])
def test_issue_page_needs_staff(client, request, passing, outsider, persona, status):
    response = login(client, request.getfixturevalue(persona)).post(reverse("certificate-issue", args=[passing.pk]), {"track": "pretraining", "level": 1})
    assert response.status_code == status
    assert Certificate.objects.count() == 0


def test_issue_page_anonymous_redirects(client, passing):
    response = client.post(reverse("certificate-issue", args=[passing.pk]), {"track": "pretraining", "level": 1})
    assert response.status_code == 302
    assert Certificate.objects.count() == 0


def test_command_issues(passing, staff, card):
    call_command("issue_certificate", "--card", f"{card.vendor.slug}/{card.model}", "--track", "pretraining", "--level", "1")
    assert Certificate.objects.get().track == "pretraining"


def test_command_refuses_failing(passing, staff, card):
    with pytest.raises(CommandError, match="no_passing_submission"):
        call_command("issue_certificate", "--card", str(card.pk), "--track", "finetuning", "--level", "1")
