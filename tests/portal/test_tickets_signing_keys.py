"""Signing key history: rotation keeps old bundles valid, revocation stops later ones, compromise flags certificates."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest
from django.db import transaction

from certification.archive import ArchiveWriter
from certification.bundle import ENVELOPE_NAME, MANIFEST_NAME, build_manifest, encode_manifest, open_bundle, sign_manifest
from certification.errors import BundleError
from certification.signing import generate_key
from portal.registry.keys import revoke_signing_key, rotate_signing_key
from portal.registry.models import SigningKey
from portal.registry.services import keyring_for_vendor, register_signing_key

T0 = datetime.fromisoformat("2026-06-01T00:00:00+00:00")


def signed_at(tmp_path, key, moment: datetime, name: str):
    """Write a real signed bundle whose manifest says it was signed at `moment`."""
    files = {"run.json": b'{"run_id": "r"}\n'}
    entries = [{"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for path, data in files.items()]
    run = {"run_id": "r", "started_at": moment.isoformat(), "rule_pack": {"name": "demo-2026.1", "sha256": "0" * 64}}
    manifest = build_manifest(run, entries)
    manifest["created_at"] = moment.isoformat()
    manifest_bytes = encode_manifest(manifest)
    path = tmp_path / f"{name}.tar"
    with open(path, "wb") as stream:
        writer = ArchiveWriter(stream)
        for member, data in files.items():
            writer.add(member, data)
        writer.add(MANIFEST_NAME, manifest_bytes)
        writer.add(ENVELOPE_NAME, sign_manifest(manifest, manifest_bytes, key))
        writer.close()
    return path


def register(vendor, key) -> SigningKey:
    with transaction.atomic():
        return register_signing_key(vendor, key.public_pem())


def verify(vendor, path):
    return open_bundle(path, keyring_for_vendor(vendor))


def refusal(vendor, path) -> str:
    with pytest.raises(BundleError) as caught:
        verify(vendor, path)
    return caught.value.code


def test_rotation_keeps_earlier_bundles_and_stops_later_ones(tmp_path, vendor):
    old, new = generate_key(), generate_key()
    old_record = register(vendor, old)
    new_record = register(vendor, new)

    closed = rotate_signing_key(vendor, new_record, at=T0)

    assert closed == [old_record]
    assert verify(vendor, signed_at(tmp_path, old, T0 - timedelta(days=1), "before")).key_id == old.key_id
    assert refusal(vendor, signed_at(tmp_path, old, T0 + timedelta(days=1), "after")) == "signature_key_outside_window"
    assert verify(vendor, signed_at(tmp_path, new, T0 + timedelta(days=1), "new")).key_id == new.key_id


def test_revoked_key_fails_from_revocation_on(tmp_path, vendor):
    key = generate_key()
    record = register(vendor, key)

    revoke_signing_key(record, at=T0)

    assert verify(vendor, signed_at(tmp_path, key, T0 - timedelta(seconds=1), "before")).key_id == key.key_id
    assert refusal(vendor, signed_at(tmp_path, key, T0, "at")) == "signature_key_revoked"


def test_keys_of_other_vendors_are_not_trusted(tmp_path, vendor, other_vendor):
    key = generate_key()
    register(other_vendor, key)

    assert refusal(vendor, signed_at(tmp_path, key, T0, "other")) == "signature_key_unknown"


def test_every_registered_key_stays_on_record(vendor):
    keys = [register(vendor, generate_key()) for _ in range(3)]
    rotate_signing_key(vendor, keys[1], at=T0)
    revoke_signing_key(keys[2], at=T0)

    assert len(keyring_for_vendor(vendor)) == 3


def certificate_for(submission, number: str, staff, track: str = "pretraining"):
    from django.utils import timezone

    from portal.certificates.models import Certificate

    return Certificate.objects.create(
        number=number, card=submission.card, track=track, level=1, rule_pack=submission.rule_pack,
        submission=submission, issued_at=timezone.now(), issued_by=staff,
    )


def stored_submission(vendor, card, rule_pack, path):
    from django.core.files.base import ContentFile

    from portal.submissions.models import Submission

    submission = Submission(vendor=vendor, card=card, rule_pack=rule_pack, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                            size=path.stat().st_size, state=Submission.State.JUDGED)
    submission.bundle.save(path.name, ContentFile(path.read_bytes()), save=False)
    submission.save()
    return submission


def test_compromise_flags_certificates_of_that_key(tmp_path, vendor, card, rule_pack, staff):
    from portal.audit.models import AuditEntry

    stolen, safe = generate_key(), generate_key()
    stolen_record = register(vendor, stolen)
    register(vendor, safe)
    flagged = certificate_for(stored_submission(vendor, card, rule_pack, signed_at(tmp_path, stolen, T0, "stolen")), "PPLM-1", staff)
    kept = certificate_for(stored_submission(vendor, card, rule_pack, signed_at(tmp_path, safe, T0, "safe")), "PPLM-2", staff, "finetuning")

    result = revoke_signing_key(stolen_record, compromised=True, reason="key left the lab")

    flagged.refresh_from_db()
    kept.refresh_from_db()
    assert result == [flagged]
    assert flagged.needs_review
    assert flagged.review_reason == "key left the lab"
    assert not kept.needs_review
    assert AuditEntry.objects.filter(action="certificate.flagged_for_review", object_id=str(flagged.pk)).exists()


def test_plain_revocation_flags_nothing(tmp_path, vendor, card, rule_pack, staff):
    key = generate_key()
    record = register(vendor, key)
    certificate = certificate_for(stored_submission(vendor, card, rule_pack, signed_at(tmp_path, key, T0, "old")), "PPLM-3", staff)

    assert revoke_signing_key(record, at=T0 + timedelta(days=1)) == []
    certificate.refresh_from_db()
    assert not certificate.needs_review


def test_admin_action_revokes_after_compromise(client, tmp_path, vendor, card, rule_pack, staff):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    key = generate_key()
    record = register(vendor, key)
    certificate = certificate_for(stored_submission(vendor, card, rule_pack, signed_at(tmp_path, key, T0, "admin")), "PPLM-4", staff)
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))

    response = client.post(reverse("admin:registry_signingkey_changelist"), {"action": "revoke_compromised", "_selected_action": [record.pk]})

    assert response.status_code == 302
    record.refresh_from_db()
    certificate.refresh_from_db()
    assert record.revoked_at is not None
    assert certificate.needs_review


def test_admin_action_rotates_to_selected_key(client, vendor):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    old, new = register(vendor, generate_key()), register(vendor, generate_key())
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))

    client.post(reverse("admin:registry_signingkey_changelist"), {"action": "make_current", "_selected_action": [new.pk]})

    old.refresh_from_db()
    new.refresh_from_db()
    assert old.valid_until is not None
    assert new.valid_until is None


def test_flagged_certificate_page_says_under_review(client, tmp_path, vendor, card, rule_pack, staff):
    stolen = generate_key()
    record = register(vendor, stolen)
    certificate = certificate_for(stored_submission(vendor, card, rule_pack, signed_at(tmp_path, stolen, T0, "stolen")), "PPLM-9", staff)
    page_before = client.get(f"/certificates/{certificate.number}/").content.decode()

    revoke_signing_key(record, compromised=True, reason="key left the lab")

    page_after = client.get(f"/certificates/{certificate.number}/").content.decode()
    assert 'id="review-flag"' not in page_before
    assert 'id="review-flag"' in page_after
    assert "key left the lab" in page_after
