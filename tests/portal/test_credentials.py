"""Signed JSON credentials: the portal signs each certificate; the public endpoint checks signature and state."""

import base64
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from certification.credentials import CredentialError, payload_of, sign_credential, signing_key_ids, verify_credential
from certification.signing import Keyring, generate_key
from portal.audit.models import AuditEntry
from portal.certificates.credentials import portal_key, portal_keyring, rotate_credential_key
from portal.certificates.models import CredentialKey
from portal.certificates.errors import CertificateError
from portal.certificates.services import issue_certificate, revoke_certificate

from .conftest import login


@pytest.fixture(autouse=True)
def key_in_tmp(settings, tmp_path):
    settings.PORTAL_CREDENTIAL_KEY_PATH = tmp_path / "keys" / "portal.key"


def post_json(client, envelope):
    return client.post(reverse("credential-verify"), data=json.dumps(envelope), content_type="application/json")


def test_credential_verifies_offline(certificate):
    claims = verify_credential(certificate.credential, portal_keyring())
    assert claims["number"] == certificate.number
    assert claims["vendor"] == "Acme <b>芯片</b>"
    assert claims["track"] == "pretraining"


def test_credential_rejects_other_key(certificate):
    with pytest.raises(CredentialError) as raised:
        verify_credential(certificate.credential, Keyring([generate_key().public_key]))
    assert raised.value.code == "key_unknown"


def test_endpoint_accepts_downloaded_credential(client, certificate):
    downloaded = client.get(reverse("certificate-credential", args=[certificate.number])).json()
    result = post_json(client, downloaded).json()
    assert result["valid"] is True
    assert result["status"] == "valid"


def test_endpoint_rejects_tampered_claims(client, certificate):
    envelope = dict(certificate.credential)
    claims = json.loads(base64.b64decode(envelope["payload"]))
    claims["level"] = 3
    envelope["payload"] = base64.b64encode(json.dumps(claims).encode()).decode()
    response = post_json(client, envelope)
    assert response.status_code == 400
    assert response.json()["code"] == "signature_invalid"


@pytest.mark.parametrize("body, code", [(b"not json", "credential_invalid"), (b'{"payload": 1}', "credential_invalid")])
def test_endpoint_rejects_garbage(client, db, body, code):
    response = client.post(reverse("credential-verify"), data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_revocation_shows_at_once(client, certificate, staff):
    login(client, staff).post(reverse("certificate-revoke", args=[certificate.number]), {"reason": "peak misreported"})
    client.logout()
    result = post_json(client, certificate.credential).json()
    assert result["status"] == "revoked"
    assert result["valid"] is False
    assert result["revoked_reason"] == "peak misreported"
    page = client.get(reverse("certificate-detail", args=[certificate.number])).content.decode()
    assert "peak misreported" in page


def test_revoke_needs_reason_and_staff(certificate, owner, staff):
    with pytest.raises(CertificateError) as raised:
        revoke_certificate(certificate, reason="  ", revoked_by=staff)
    assert raised.value.code == "reason_missing"
    with pytest.raises(CertificateError) as raised:
        revoke_certificate(certificate, reason="because", revoked_by=owner)
    assert raised.value.code == "not_staff_revoke"


def test_revoke_page_refuses_vendor(client, certificate, owner):
    response = login(client, owner).post(reverse("certificate-revoke", args=[certificate.number]), {"reason": "mine"})
    assert response.status_code == 403
    certificate.refresh_from_db()
    assert not certificate.is_revoked


def test_public_key_served(client, db):
    assert client.get(reverse("credential-key")).content.startswith(b"-----BEGIN PUBLIC KEY-----")


# Key rotation ---------------------------------------------------------------


def test_credential_names_its_key(certificate):
    key_ids = signing_key_ids(certificate.credential)

    assert key_ids == [portal_key().key_id]
    assert CredentialKey.objects.get(key_id=key_ids[0]).retired_at is None


def test_rotation_keeps_old_credentials_valid(client, certificate, staff, settings):
    old_key_id = portal_key().key_id

    call_command("rotate_credential_key", "--staff-user", "staff", stdout=io.StringIO())

    assert portal_key().key_id != old_key_id
    assert (settings.PORTAL_CREDENTIAL_KEY_PATH.parent / f"portal.retired-{old_key_id[:16]}.key").is_file()
    result = post_json(client, certificate.credential).json()
    assert result["valid"] is True
    assert result["key_id"] == old_key_id
    assert result["key_status"] == "retired"
    entry = AuditEntry.objects.get(action="credential_key.rotated")
    assert entry.actor == staff
    assert entry.data["old_key_id"] == old_key_id


def test_new_certificates_use_new_key(certificate, staff, vendor, card, rule_pack):
    rotation = rotate_credential_key(actor=staff)
    revoke_certificate(certificate, reason="reissued", revoked_by=staff)

    reissued = issue_certificate(submission=certificate.submission, track="pretraining", level=1, issued_by=staff)

    assert signing_key_ids(reissued.credential) == [rotation.new_key_id]
    assert verify_credential(reissued.credential, portal_keyring())["number"] == reissued.number
    assert verify_credential(certificate.credential, portal_keyring())["number"] == certificate.number


def test_published_keys_list_current_and_retired(client, certificate):
    old_key_id = portal_key().key_id
    rotation = rotate_credential_key()

    keys = {item["key_id"]: item for item in client.get(reverse("credential-keys")).json()["keys"]}

    assert keys[old_key_id]["status"] == "retired"
    assert keys[old_key_id]["retired_at"] is not None
    assert keys[rotation.new_key_id]["status"] == "current"
    assert keys[rotation.new_key_id]["public_key_pem"] == portal_key().public_pem()
    assert client.get(reverse("credential-key")).content.decode() == portal_key().public_pem()


def test_unknown_key_fails_clearly(client, certificate):
    stranger = sign_credential(payload_of(certificate.credential), generate_key())

    response = post_json(client, stranger)

    assert response.status_code == 400
    assert response.json()["code"] == "key_unknown"
    assert signing_key_ids(stranger)[0] in response.json()["detail"]
    with pytest.raises(CredentialError) as raised:
        verify_credential(stranger, portal_keyring())
    assert raised.value.code == "key_unknown"


def test_verifying_leaves_envelope_unchanged(certificate):
    before = json.dumps(certificate.credential, sort_keys=True)

    verify_credential(certificate.credential, portal_keyring())
    verify_credential(certificate.credential, portal_keyring())

    assert json.dumps(certificate.credential, sort_keys=True) == before


def test_rotate_command_rejects_unknown_user(db):
    with pytest.raises(CommandError, match="nobody"):
        call_command("rotate_credential_key", "--staff-user", "nobody")
