"""Marking a retired credential key compromised: keys.json, the verification page and API, re-signed credentials."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from certification.credentials import payload_of, sign_credential, signing_key_ids
from certification.signing import load_private_key
from portal.audit.models import AuditEntry
from portal.certificates.credentials import mark_key_compromised, portal_key, rotate_credential_key, shown_time
from portal.certificates.errors import CertificateError
from portal.certificates.models import Certificate, CredentialKey
from portal.certificates.services import issue_certificate

from .helpers_verdict import judged_submission, verdict


@pytest.fixture(autouse=True)
def key_in_tmp(settings, tmp_path):
    settings.PORTAL_CREDENTIAL_KEY_PATH = tmp_path / "keys" / "portal.key"


@pytest.fixture
def retired(certificate):
    """Rotate once: the certificate's credential is signed by the now retired key."""
    return rotate_credential_key()


def post_json(client, envelope, language="en"):
    return client.post(reverse("credential-verify"), data=json.dumps(envelope), content_type="application/json", HTTP_ACCEPT_LANGUAGE=language)


def mark(key_id, *extra):
    output = io.StringIO()
    call_command("mark_credential_key_compromised", key_id, "--reason", "private key copied to a lost laptop", *extra, stdout=output)
    return output.getvalue()


def test_command_marks_key_and_audits(client, certificate, retired, staff):
    output = mark(retired.old_key_id, "--staff-user", "staff")

    key = CredentialKey.objects.get(key_id=retired.old_key_id)
    assert key.compromised_at is not None
    assert key.compromised_by == staff
    assert f"credential key {retired.old_key_id} marked compromised" in output
    assert certificate.number in output
    entry = AuditEntry.objects.get(action="credential_key.compromised")
    assert entry.actor == staff
    assert entry.data["key_id"] == retired.old_key_id
    assert entry.data["reason"] == "private key copied to a lost laptop"
    assert entry.data["resigned_certificates"] == [certificate.number]


def test_keys_json_lists_compromise(client, retired):
    mark(retired.old_key_id)

    keys = {item["key_id"]: item for item in client.get(reverse("credential-keys")).json()["keys"]}

    assert keys[retired.old_key_id]["status"] == "compromised"
    assert keys[retired.old_key_id]["compromised_reason"] == "private key copied to a lost laptop"
    assert keys[retired.old_key_id]["compromised_at"] is not None
    assert keys[retired.new_key_id]["status"] == "current"
    assert keys[retired.new_key_id]["compromised_at"] is None


def test_old_credential_not_trustworthy(client, certificate, retired):
    old_credential = certificate.credential
    mark(retired.old_key_id)
    key = CredentialKey.objects.get(key_id=retired.old_key_id)

    response = post_json(client, old_credential)

    assert response.status_code == 400
    body = response.json()
    assert body["valid"] is False
    assert body["code"] == "key_compromised"
    assert body["key_id"] == retired.old_key_id
    assert body["key_status"] == "compromised"
    assert body["key_compromised_at"] == key.compromised_at.isoformat()
    assert retired.old_key_id in body["detail"]
    assert shown_time(key.compromised_at) in body["detail"]
    assert "not trustworthy" in body["detail"]
    assert "claims" not in body


def test_chinese_page_names_key_and_date(client, certificate, retired):
    old_credential = certificate.credential
    mark(retired.old_key_id)
    client.cookies["django_language"] = "zh-hans"

    response = client.post(reverse("credential-verify"), {"credential": json.dumps(old_credential)})

    page = response.content.decode()
    assert response.status_code == 400
    assert retired.old_key_id in page
    assert "被标记为泄露" in page
    assert "不可信" in page
    assert "CST" in page
    assert "[key_compromised]" in page


def test_forgery_with_leaked_key_rejected(client, certificate, retired):
    mark(retired.old_key_id)
    claims = payload_of(certificate.credential)
    claims["level"] = 3
    forged = sign_credential({key: value for key, value in claims.items() if key != "version"}, load_private_key(retired.retired_file))

    body = post_json(client, forged).json()

    assert body["code"] == "key_compromised"
    assert body["valid"] is False


def test_certificate_credential_signed_again(client, certificate, retired):
    mark(retired.old_key_id)

    downloaded = client.get(reverse("certificate-credential", args=[certificate.number])).json()

    assert signing_key_ids(downloaded) == [retired.new_key_id]
    assert payload_of(downloaded) == payload_of(Certificate.objects.get(pk=certificate.pk).credential)
    result = post_json(client, downloaded).json()
    assert result["valid"] is True
    assert result["key_status"] == "current"


def test_other_keys_stay_valid(client, certificate, retired, staff, vendor, card, rule_pack):
    second = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(), label="second"), track="finetuning", level=1, issued_by=staff)
    second_rotation = rotate_credential_key()
    third = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(2, 1), label="third"), track="pretraining", level=2, issued_by=staff)

    compromise = mark_key_compromised(retired.old_key_id, reason="leaked")

    assert compromise.resigned == [certificate.number]
    retired_result = post_json(client, second.credential).json()
    assert retired_result["valid"] is True
    assert retired_result["key_id"] == second_rotation.old_key_id
    assert retired_result["key_status"] == "retired"
    current_result = post_json(client, third.credential).json()
    assert current_result["valid"] is True
    assert current_result["key_status"] == "current"
    assert Certificate.objects.get(pk=second.pk).credential == second.credential


def test_key_found_by_prefix(retired):
    mark(retired.old_key_id[:16])

    assert CredentialKey.objects.get(key_id=retired.old_key_id).compromised_at is not None


@pytest.mark.parametrize("which, reason, code", [
    ("current", "leaked", "credential_key_current"),
    ("unknown", "leaked", "credential_key_not_found"),
    ("short", "leaked", "credential_key_not_found"),
    ("retired", "  ", "compromise_reason_missing"),
])
def test_marking_rejects_bad_request(retired, which, reason, code):
    key_id = {"current": retired.new_key_id, "unknown": "ab" * 32, "short": retired.old_key_id[:4], "retired": retired.old_key_id}[which]

    with pytest.raises(CertificateError) as raised:
        mark_key_compromised(key_id, reason=reason)

    assert raised.value.code == code
    assert CredentialKey.objects.filter(compromised_at__isnull=False).count() == 0
    assert not AuditEntry.objects.filter(action="credential_key.compromised").exists()


def test_marking_twice_rejected(retired):
    mark_key_compromised(retired.old_key_id, reason="leaked")

    with pytest.raises(CertificateError) as raised:
        mark_key_compromised(retired.old_key_id, reason="leaked again")

    assert raised.value.code == "credential_key_already_compromised"
    assert CredentialKey.objects.get(key_id=retired.old_key_id).compromised_reason == "leaked"


def test_command_names_error(retired):
    with pytest.raises(CommandError, match="credential_key_current"):
        mark(retired.new_key_id)
    with pytest.raises(CommandError, match="nobody"):
        mark(retired.old_key_id, "--staff-user", "nobody")


def test_trusted_second_signature_still_valid(client, certificate, retired):
    mark_key_compromised(retired.old_key_id, reason="leaked")
    claims = {key: value for key, value in payload_of(certificate.credential).items() if key != "version"}
    by_leaked_key = sign_credential(claims, load_private_key(retired.retired_file))
    by_current_key = sign_credential(claims, portal_key())
    both = {**by_current_key, "signatures": by_leaked_key["signatures"] + by_current_key["signatures"]}

    body = post_json(client, both).json()

    assert body["valid"] is True
    assert body["key_id"] == retired.new_key_id
    assert body["key_status"] == "current"
