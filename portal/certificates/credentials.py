"""The portal's credential key and the signed JSON credential of each certificate."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.urls import reverse

from certification.credentials import sign_credential, verify_credential
from certification.signing import Keyring, PrivateKey, generate_key, load_private_key, save_private_key

logger = logging.getLogger(__name__)
_key_lock = threading.Lock()


def portal_key() -> PrivateKey:
    """Load the portal's credential key, creating it with mode 0600 on first use."""
    path = settings.PORTAL_CREDENTIAL_KEY_PATH
    with _key_lock:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_private_key(generate_key(), path)
            logger.warning("created the portal credential key %s; keep it and back it up, credentials verify only with it", path)
    return load_private_key(path)


def portal_keyring() -> Keyring:
    return Keyring([portal_key().public_key])


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
        "verification_url": settings.PORTAL_BASE_URL + reverse("certificate-detail", args=[certificate.number]),
    }


def sign_certificate(certificate) -> dict:
    return sign_credential(credential_claims(certificate), portal_key())


def check_credential(envelope) -> dict:
    """Return the claims of a credential signed by the portal; raise certification's CredentialError otherwise."""
    return verify_credential(envelope, portal_keyring())
