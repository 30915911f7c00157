"""The management commands that scripts/demo.py reads as JSON: show_submission and issue_certificate."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from certification.credentials import payload_of
from portal.certificates.models import Certificate

from .helpers_verdict import judged_submission, verdict


@pytest.fixture
def submission(vendor, card, rule_pack, staff):
    return judged_submission(vendor, card, rule_pack, verdict(pretraining_level=1, finetuning_level=0))


def test_show_submission_json(submission, capsys):
    call_command("show_submission", str(submission.pk), "--json")

    summary = json.loads(capsys.readouterr().out)

    assert summary["id"] == submission.pk
    assert summary["state"] == "judged"
    assert summary["card_id"] == submission.card_id
    assert summary["verdict"]["tracks"]["pretraining"]["level"] == 1


def test_show_submission_table_names_criteria(submission, capsys):
    call_command("show_submission", str(submission.pk))

    output = capsys.readouterr().out

    assert "pretrain.throughput" in output
    assert "track pretraining: level 1" in output


def test_show_submission_table_in_chinese(submission, capsys):
    call_command("show_submission", str(submission.pk), "--lang", "zh")

    output = capsys.readouterr().out

    assert f"提交 {submission.pk}：已评判（" in output
    assert "认证方向 预训练：等级 1" in output
    assert "级别" not in output
    assert "track pretraining" not in output


@pytest.mark.parametrize("language, expected, unexpected", [
    ("en", "track dpo: no requirements in this rule pack", "track dpo: level"),
    ("zh", "认证方向 DPO：本规则包对它没有要求", "认证方向 DPO：等级"),
])
def test_show_submission_track_without_requirements(vendor, card, rule_pack, capsys, language, expected, unexpected):
    payload = verdict()
    payload["tracks"]["dpo"] = {"level": 0, "max_level": 0, "gap": []}
    submission = judged_submission(vendor, card, rule_pack, payload)

    call_command("show_submission", str(submission.pk), "--lang", language)

    output = capsys.readouterr().out
    assert expected in output
    assert unexpected not in output


def test_show_submission_unknown_id(db):
    with pytest.raises(CommandError, match="submission 999 not found"):
        call_command("show_submission", "999")


def test_issue_certificate_json(submission, staff, capsys):
    call_command("issue_certificate", "--card", str(submission.card_id), "--track", "pretraining", "--level", "1",
                 "--staff-user", staff.username, "--json")

    issued = json.loads(capsys.readouterr().out)

    certificate = Certificate.objects.get()
    assert issued["number"] == certificate.number
    assert issued["pdf_url"] == f"/certificates/{certificate.number}/pdf/"
    assert issued["verify_url"] == f"/certificates/{certificate.number}/"
    assert issued["credential_url"] == payload_of(certificate.credential)["verification_url"]
    assert issued["credential_url"].endswith(issued["verify_url"])


def test_issue_certificate_existing_ok(submission, staff, capsys):
    arguments = ["--card", str(submission.card_id), "--track", "pretraining", "--level", "1", "--staff-user", staff.username, "--json"]
    call_command("issue_certificate", *arguments)
    first = json.loads(capsys.readouterr().out)

    with pytest.raises(CommandError, match="already_certified"):
        call_command("issue_certificate", *arguments)
    call_command("issue_certificate", *arguments, "--existing-ok")
    second = json.loads(capsys.readouterr().out)

    assert second["number"] == first["number"]
    assert Certificate.objects.count() == 1


def test_issue_certificate_not_passing(submission, staff):
    with pytest.raises(CommandError, match="no_passing_submission"):
        call_command("issue_certificate", "--card", str(submission.card_id), "--track", "finetuning", "--level", "1",
                     "--staff-user", staff.username)
