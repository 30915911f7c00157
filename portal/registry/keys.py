"""Signing key history: rotation, revocation and keyrings that know each key's validity window.

Every key a vendor ever registered stays on record with its window. A bundle
verifies with the key that was valid at its signing time (the manifest's
`created_at`), so bundles signed before a rotation still verify, and a
revoked key's later bundles do not. A vendor's own clock sets `created_at`,
so a thief holding a key can backdate a bundle. Revoking a key after a
compromise therefore also flags for review the certificates that rest on
bundles the key signed.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from certification.bundle import ENVELOPE_NAME
from certification.signing import Keyring, KeyWindow, load_public_key
from portal.audit.services import record
from portal.registry.models import SigningKey, Vendor

logger = logging.getLogger(__name__)


def whole_second_now() -> datetime:
    """Now, without microseconds: manifests state their time to the second."""
    return timezone.now().replace(microsecond=0)


def key_window(key: SigningKey) -> KeyWindow:
    """Return the window the pipeline enforces: the key's end (rotation) and its revocation.

    `valid_from` is not enforced: a vendor may sign with a new key before
    registering it, and that proves nothing false. The ends are what matter,
    because a retired or revoked key must not sign new bundles. Where tickets
    are used, the ticket check bounds backdating: it rejects a bundle that
    claims a time before its ticket was issued.
    """
    return KeyWindow(valid_until=key.valid_until, revoked_at=key.revoked_at)


def keyring_of(keys) -> Keyring:
    """Build a keyring of every given key, each with its window, revoked ones included."""
    keyring = Keyring()
    for key in keys:
        keyring.add(load_public_key(key.public_key_pem), key_window(key))
    return keyring


@transaction.atomic
def rotate_signing_key(vendor: Vendor, new_key: SigningKey, *, at: datetime | None = None, actor=None) -> list[SigningKey]:
    """Close the window of the vendor's other open keys at `at` (default now), leaving `new_key` as the current one."""
    at = at or whole_second_now()
    if new_key.vendor_id != vendor.pk:
        raise ValueError(f"key {new_key.key_id} belongs to vendor {new_key.vendor.slug}, not {vendor.slug}")
    new_key.valid_from = at
    new_key.save(update_fields=["valid_from"])
    closed = list(
        SigningKey.objects.select_for_update()
        .filter(vendor=vendor, valid_until__isnull=True, revoked_at__isnull=True)
        .exclude(pk=new_key.pk)
    )
    for key in closed:
        key.valid_until = at
        key.save(update_fields=["valid_until"])
        record("signing_key.rotated", key, actor=actor, data={"key_id": key.key_id, "valid_until": at.isoformat(), "replaced_by": new_key.key_id})
    return closed


@transaction.atomic
def revoke_signing_key(key: SigningKey, *, at: datetime | None = None, compromised: bool = False, reason: str = "", actor=None) -> list:
    """Revoke `key` from `at` (default now): bundles it signs from then on fail verification.

    With `compromised`, every active certificate that rests on a bundle this
    key signed is flagged for review, whatever time the bundle claims.
    Return the certificates flagged.
    """
    key = SigningKey.objects.select_for_update().get(pk=key.pk)
    key.revoked_at = at or whole_second_now()
    key.save(update_fields=["revoked_at"])
    record("signing_key.revoked", key, actor=actor, data={"key_id": key.key_id, "revoked_at": key.revoked_at.isoformat(), "compromised": compromised, "reason": reason})
    if not compromised:
        return []
    return flag_certificates_of_key(key, reason or f"signing key {key.key_id} revoked after a compromise", actor=actor)


def flag_certificates_of_key(key: SigningKey, reason: str, *, actor=None) -> list:
    from portal.certificates.models import Certificate

    flagged = []
    for certificate in Certificate.objects.active().filter(submission__vendor=key.vendor).select_related("submission"):
        signers = bundle_key_ids(certificate.submission.bundle)
        if signers is None or key.key_id in signers:
            certificate.flag_for_review(reason)
            record("certificate.flagged_for_review", certificate, actor=actor, data={"key_id": key.key_id, "reason": reason})
            flagged.append(certificate)
    logger.info("revoking key %s flagged %d certificate(s) for review", key.key_id, len(flagged))
    return flagged


def bundle_key_ids(field) -> set[str] | None:
    """Return the key ids that signed a stored bundle, read from its envelope; None when it cannot be read.

    A certificate whose bundle cannot be read is flagged too: not knowing is no reason to trust it.
    """
    from certification.archive import read_archive
    from certification.bundle import BundleError
    from portal.submissions.pipeline import local_path

    try:
        with local_path(field) as path:
            envelope = read_archive(path).kept.get(ENVELOPE_NAME, b"")
    except (BundleError, OSError):
        return None
    try:
        return {signature.get("keyid") for signature in json.loads(envelope).get("signatures", [])}
    except (ValueError, AttributeError):
        return None
