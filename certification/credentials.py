"""Signed certificate credentials: a DSSE envelope over the certificate's claims as JSON.

The portal signs with its own Ed25519 key (certification.signing); anyone
with the portal's public key can check a credential offline. The claims
never carry the revocation state, because that changes after signing: ask
the portal's verification page or revocation list for it.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError

from certification.signing import Keyring, PrivateKey

PAYLOAD_TYPE = "application/vnd.paddle-accelerator-certificate+json"
CREDENTIAL_VERSION = 1


class CredentialError(ValueError):
    """A credential that cannot be read or whose signature does not verify, with a stable `code`.

    `reason` names the case within the code (such as `not_envelope` or
    `payload_type` under `credential_invalid`) and `params` holds its values,
    so the portal can state the reason in the reader's language.
    """

    def __init__(self, code: str, message: str, reason: str = "", **params: Any):
        super().__init__(message)
        self.code = code
        self.reason = reason or code
        self.params = params


def encode_claims(claims: dict[str, Any]) -> bytes:
    return json.dumps({"version": CREDENTIAL_VERSION, **claims}, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_credential(claims: dict[str, Any], key: PrivateKey) -> dict:
    """Return a DSSE envelope (as a dict) over the JSON claims, signed by `key`."""
    envelope = Envelope(encode_claims(claims), PAYLOAD_TYPE, {})
    envelope.sign(key.signer)
    return envelope.to_dict()


def verify_credential(envelope: Any, keyring: Keyring) -> dict[str, Any]:
    """Return the claims of a credential signed by a key of `keyring`; raise CredentialError otherwise."""
    try:
        # from_dict rewrites the signatures of the dict it reads, so it gets a copy.
        parsed = Envelope.from_dict(copy.deepcopy(envelope))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CredentialError("credential_invalid", f"the credential is not a DSSE envelope: {error}", "not_envelope", error=str(error)) from None
    if parsed.payload_type != PAYLOAD_TYPE:
        raise CredentialError(
            "credential_invalid", f"payload type {parsed.payload_type!r} is not {PAYLOAD_TYPE!r}", "payload_type", payload_type=repr(parsed.payload_type)
        )
    key_ids = sorted(parsed.signatures)
    if not any(key_id in keyring for key_id in key_ids):
        shown_ids = ", ".join(key_ids) or "(none)"
        raise CredentialError(
            "key_unknown",
            f"the credential is signed by key id {shown_ids}, which is not among the portal's "
            "current and retired credential keys; fetch the published keys and check where the credential came from",
            key_ids=shown_ids,
        )
    try:
        parsed.verify([key.sslib_key for key in keyring], 1)
    except VerificationError:
        raise CredentialError("signature_invalid", "no signature of the credential verifies with the portal's keys") from None
    return json.loads(parsed.payload.decode("utf-8"))


def signing_key_ids(envelope: dict) -> list[str]:
    """Return the key ids named by the signatures of an envelope, unverified."""
    return sorted(str(item.get("keyid", "")) for item in envelope.get("signatures", []) if isinstance(item, dict))


def payload_of(envelope: dict) -> dict[str, Any]:
    """Return the unverified claims of an envelope, for display next to the verification result."""
    return json.loads(base64.b64decode(envelope["payload"]).decode("utf-8"))
