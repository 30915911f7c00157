"""The portal's credential keys and the signed JSON credential of each certificate.

The current private key is the file PORTAL_CREDENTIAL_KEY_PATH. Every key
that ever signed a credential is recorded as a CredentialKey with its public
key, so a rotation retires the old key without breaking the credentials it
signed.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from certification.credentials import sign_credential, verify_credential
from certification.signing import Keyring, PrivateKey, generate_key, load_private_key, save_private_key
from portal.audit.services import record
from portal.certificates.models import CredentialKey
from portal.links import public_url

logger = logging.getLogger(__name__)
_key_lock = threading.Lock()


def portal_key() -> PrivateKey:
    """Load the portal's current credential key, creating it with mode 0600 on first use, and record its public key."""
    path = settings.PORTAL_CREDENTIAL_KEY_PATH
    with _key_lock:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_private_key(generate_key(), path)
            logger.warning("created the portal credential key %s; keep it and back it up, credentials verify only with it", path)
    key = load_private_key(path)
    CredentialKey.objects.get_or_create(key_id=key.key_id, defaults={"public_pem": key.public_pem()})
    return key


def portal_keyring() -> Keyring:
    """Return the current credential key and every retired one."""
    current = portal_key()
    keyring = Keyring.from_pems(CredentialKey.objects.values_list("public_pem", flat=True))
    keyring.add(current.public_key)
    return keyring


def published_keys() -> list[dict]:
    """Return every credential key as the public JSON lists it: id, PEM, status and dates."""
    current = portal_key().key_id
    return [
        {
            "key_id": key.key_id, "algorithm": "ed25519", "public_key_pem": key.public_pem,
            "status": "current" if key.key_id == current else "retired",
            "created_at": key.created_at.isoformat(), "retired_at": key.retired_at.isoformat() if key.retired_at else None,
        }
        for key in CredentialKey.objects.all()
    ]


def key_status(key_id: str) -> str:
    """Return "current", "retired" or "unknown" for a credential key id."""
    if key_id == portal_key().key_id:
        return "current"
    return "retired" if CredentialKey.objects.filter(key_id=key_id).exists() else "unknown"


@dataclass(frozen=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    retired_file: Path


def rotate_credential_key(*, actor=None) -> Rotation:
    """Replace the current credential key with a new one; the old public key stays in the keyring.

    The new key is written next to the current one first. The database records
    the retirement and the new key in one transaction. Only after it commits
    are the files swapped. The old private key is renamed to
    `<name>.retired-<key id prefix><suffix>`, and the new one takes its path.

    NOTE: a crash between the commit and the swap leaves the old key file in
    place while the database marks it retired. Running the rotation again fixes it.
    """
    path = Path(settings.PORTAL_CREDENTIAL_KEY_PATH)
    old = portal_key()
    new = generate_key()
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)  # left by a rotation that stopped before the swap; it was never used
    save_private_key(new, staged)
    retired_file = path.with_name(f"{path.stem}.retired-{old.key_id[:16]}{path.suffix}")

    with transaction.atomic():
        now = timezone.now()
        CredentialKey.objects.filter(key_id=old.key_id).update(retired_at=now)
        recorded = CredentialKey.objects.create(key_id=new.key_id, public_pem=new.public_pem())
        record("credential_key.rotated", recorded, actor=actor, data={"old_key_id": old.key_id, "new_key_id": new.key_id})
    with _key_lock:
        os.replace(path, retired_file)
        os.replace(staged, path)
    logger.warning("rotated the credential key %s to %s; the old private key is now %s", old.key_id, new.key_id, retired_file)
    return Rotation(old.key_id, new.key_id, retired_file)


def credential_claims(certificate) -> dict:
    """Return the facts a credential states: everything printed on the certificate except its revocation state."""
    return {
        "number": certificate.number,
        "vendor": certificate.card.vendor.name,
        "card": {"model": certificate.card.model, "serial": certificate.card.serial},
        "track": certificate.track,
        "level": certificate.level,
        "rule_pack": {"name": certificate.rule_pack.name, "sha256": certificate.rule_pack.sha256},
        "reference_kind": certificate.rule_pack.reference_kind,
        "issued_at": certificate.issued_at.isoformat(),
        "submission_sha256": certificate.submission.sha256,
        "key_figures": certificate.key_figures,
        # NOTE: with PORTAL_BASE_URL unset this is a root-relative path, because issuing has no request to take a host from.
        "verification_url": public_url(reverse("certificate-detail", args=[certificate.number])),
    }


def sign_certificate(certificate) -> dict:
    return sign_credential(credential_claims(certificate), portal_key())


def check_credential(envelope) -> dict:
    """Return the claims of a credential signed by a current or retired portal key; raise certification's CredentialError otherwise."""
    return verify_credential(envelope, portal_keyring())
