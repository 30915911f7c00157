"""The portal's credential keys and the signed JSON credential of each certificate.

The current private key is the file PORTAL_CREDENTIAL_KEY_PATH. Every key
that ever signed a credential is recorded as a CredentialKey with its public
key, so a rotation retires the old key without breaking the credentials it
signed. A retired key marked compromised is no longer trusted: credentials
it signed fail verification with `key_compromised`.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from certification.credentials import CredentialError, sign_credential, signing_key_ids, verify_credential
from certification.signing import Keyring, PrivateKey, generate_key, load_private_key, save_private_key
from portal.audit.services import record
from portal.certificates.errors import CertificateError
from portal.certificates.models import CredentialKey

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
    """Return the current credential key and every retired one that is not marked compromised."""
    portal_key()  # records the current key, so the query below includes it unless it is marked compromised
    return Keyring.from_pems(CredentialKey.objects.filter(compromised_at__isnull=True).values_list("public_pem", flat=True))


def published_keys() -> list[dict]:
    """Return every credential key as the public JSON lists it: id, PEM, status, dates and any compromise."""
    current = portal_key().key_id
    return [
        {
            "key_id": key.key_id, "algorithm": "ed25519", "public_key_pem": key.public_pem,
            "status": _status_of(key, current),
            "created_at": key.created_at.isoformat(), "retired_at": key.retired_at.isoformat() if key.retired_at else None,
            "compromised_at": key.compromised_at.isoformat() if key.compromised_at else None,
            "compromised_reason": key.compromised_reason or None,
        }
        for key in CredentialKey.objects.all()
    ]


def _status_of(key: CredentialKey, current_key_id: str) -> str:
    if key.is_compromised:
        return "compromised"
    return "current" if key.key_id == current_key_id else "retired"


def key_status(key_id: str) -> str:
    """Return "current", "retired", "compromised" or "unknown" for a credential key id."""
    current = portal_key().key_id
    key = CredentialKey.objects.filter(key_id=key_id).first()
    if key is None:
        return "current" if key_id == current else "unknown"
    return _status_of(key, current)


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
        "verification_url": certificate.verification_url,
    }


def sign_certificate(certificate) -> dict:
    return sign_credential(credential_claims(certificate), portal_key())


class CompromisedKeyError(Exception):
    """A credential whose only verifying signature is by a key marked compromised."""

    def __init__(self, key: CredentialKey):
        super().__init__(f"signed by compromised credential key {key.key_id}")
        self.key = key


def check_credential(envelope) -> dict:
    """Return the claims of a credential signed by a trusted portal key.

    Raise CompromisedKeyError when only a key marked compromised verifies it,
    and certification's CredentialError when no portal key does.
    """
    try:
        return verify_credential(envelope, portal_keyring())
    except CredentialError as error:
        if error.code == "credential_invalid":
            raise
        key = _compromised_signer(envelope)
        if key is None:
            raise
        raise CompromisedKeyError(key) from None


def _compromised_signer(envelope) -> CredentialKey | None:
    """Return the compromised key whose signature on `envelope` verifies, if any."""
    for key in CredentialKey.objects.filter(compromised_at__isnull=False, key_id__in=signing_key_ids(envelope)):
        try:
            verify_credential(envelope, Keyring.from_pems([key.public_pem]))
        except CredentialError:
            continue
        return key
    return None


def find_credential_key(key_id: str) -> CredentialKey:
    """Return the credential key with id `key_id`, or the only one whose id starts with it (at least 8 characters)."""
    key_id = key_id.strip().lower()
    exact = CredentialKey.objects.filter(key_id=key_id).first()
    if exact is not None:
        return exact
    matches = list(CredentialKey.objects.filter(key_id__startswith=key_id)[:2]) if len(key_id) >= 8 else []
    if len(matches) != 1:
        known = ", ".join(CredentialKey.objects.values_list("key_id", flat=True)) or "(none)"
        raise CertificateError("credential_key_not_found", key_id=key_id, known=known)
    return matches[0]


@dataclass(frozen=True)
class Compromise:
    key_id: str
    compromised_at: datetime
    resigned: list[str]
    current_key_id: str


def mark_key_compromised(key_id: str, *, reason: str, actor=None) -> Compromise:
    """Mark a retired credential key compromised and sign the credentials it signed again with the current key.

    From the commit on, credentials signed only by that key fail verification
    with `key_compromised`, and keys.json lists it as compromised. Each
    certificate keeps its claims; its downloadable credential gets the
    current key's signature in the same transaction as the mark and the
    `credential_key.compromised` audit entry. The current key cannot be marked:
    rotate it first, so that new credentials are not signed by a compromised key.
    """
    reason = reason.strip()
    if not reason:
        raise CertificateError("compromise_reason_missing", key_id=key_id)
    current = portal_key()
    with transaction.atomic():
        key = CredentialKey.objects.select_for_update().get(pk=find_credential_key(key_id).pk)
        _check_can_mark(key, current.key_id)
        key.compromised_at = timezone.now()
        key.compromised_reason = reason
        key.compromised_by = actor
        key.save(update_fields=["compromised_at", "compromised_reason", "compromised_by"])
        resigned = _sign_again(key.key_id, current)
        record("credential_key.compromised", key, actor=actor, data={
            "key_id": key.key_id, "reason": reason, "resigned_certificates": resigned, "current_key_id": current.key_id,
        })
    logger.warning("credential key %s marked compromised; %d credentials signed again with %s", key.key_id, len(resigned), current.key_id)
    return Compromise(key.key_id, key.compromised_at, resigned, current.key_id)


def _check_can_mark(key: CredentialKey, current_key_id: str) -> None:
    if key.is_compromised:
        raise CertificateError("credential_key_already_compromised", key_id=key.key_id, date=shown_time(key.compromised_at))
    if key.key_id == current_key_id:
        raise CertificateError("credential_key_current", key_id=key.key_id)


def _sign_again(key_id: str, current: PrivateKey) -> list[str]:
    """Sign again, with `current`, every stored credential that carries a signature by `key_id`; return the certificate numbers."""
    from portal.certificates.models import Certificate

    resigned = []
    for certificate in Certificate.objects.filter(credential__isnull=False).select_related("card__vendor", "rule_pack", "submission").order_by("id"):
        if key_id in signing_key_ids(certificate.credential):
            certificate.credential = sign_credential(credential_claims(certificate), current)
            certificate.save(update_fields=["credential"])
            resigned.append(certificate.number)
    return resigned


def shown_time(moment: datetime) -> str:
    """Return a time as messages show it: minutes in the portal's time zone, with the zone's name."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")
