"""The portal's ticket key: its own Ed25519 key, separate from the credential key."""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from certification.signing import Keyring, PrivateKey, generate_key, load_private_key, save_private_key

logger = logging.getLogger(__name__)
_key_lock = threading.Lock()


def ticket_key() -> PrivateKey:
    """Load the portal's ticket key, creating it with mode 0600 on first use."""
    path = settings.PORTAL_TICKET_KEY_PATH
    with _key_lock:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_private_key(generate_key(), path)
            logger.warning("created the portal ticket key %s; tickets issued before a new key stop verifying", path)
    return load_private_key(path)


def ticket_keyring() -> Keyring:
    return Keyring([ticket_key().public_key])
