"""Ed25519 keys for signing result bundles, through securesystemslib.

A key id is securesystemslib's default key id: the sha256 of the canonical
JSON form of the public key (key type, scheme and public value). The same
public key always has the same id, on the agent and on the portal.

Private keys are PKCS#8 PEM files without a passphrase, written with mode
0600; public keys are SubjectPublicKeyInfo PEM.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

from certification.errors import os_error_details


class SigningError(ValueError):
    """A key that cannot be read or used, with a stable `code` and a `hint`.

    `values` contains the parts of the English message by name (such as `path`), so that a caller can
    show the message in another language.
    """

    def __init__(self, code: str, message: str, hint: str = "", values: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.hint = hint
        self.values = values or {}


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key with its securesystemslib form and key id."""

    crypto_key: Ed25519PublicKey
    sslib_key: SSlibKey

    @classmethod
    def from_crypto(cls, crypto_key: Ed25519PublicKey) -> PublicKey:
        return cls(crypto_key, SSlibKey.from_crypto(crypto_key))

    @property
    def key_id(self) -> str:
        return self.sslib_key.keyid

    def public_pem(self) -> str:
        data = self.crypto_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return data.decode("ascii")

    def verify(self, signature: Signature, data: bytes) -> bool:
        """Return True when `signature` is this key's valid signature of `data`."""
        try:
            self.sslib_key.verify_signature(signature, data)
        except (UnverifiedSignatureError, VerificationError):
            return False
        return True


class PrivateKey:
    """An Ed25519 private key that signs through securesystemslib's CryptoSigner."""

    def __init__(self, crypto_key: Ed25519PrivateKey):
        self._crypto_key = crypto_key
        self.public_key = PublicKey.from_crypto(crypto_key.public_key())
        self.signer = CryptoSigner(crypto_key, self.public_key.sslib_key)

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def public_pem(self) -> str:
        return self.public_key.public_pem()

    def private_pem(self) -> bytes:
        return self._crypto_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"PrivateKey(key_id={self.key_id!r})"


@dataclass(frozen=True)
class KeyWindow:
    """When a key may sign: from `valid_from` up to (not including) `valid_until`, and never at or after `revoked_at`.

    Times are timezone-aware; None means open-ended.
    """

    valid_from: datetime | None = None
    valid_until: datetime | None = None
    revoked_at: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        if self.valid_from is not None and moment < self.valid_from:
            return False
        if self.valid_until is not None and moment >= self.valid_until:
            return False
        return self.revoked_at is None or moment < self.revoked_at


class Keyring:
    """Trusted public keys by key id, each with an optional validity window; the portal builds one from its records.

    A key added without a window is trusted at any time (a key file passed on
    the command line). The portal adds every key a vendor ever registered with
    its window, so a bundle verifies with the key that was valid when it was signed.
    """

    def __init__(self, keys: Iterable[PublicKey] = ()):
        self._keys: dict[str, PublicKey] = {}
        self._windows: dict[str, KeyWindow] = {}
        for key in keys:
            self.add(key)

    def add(self, key: PublicKey, window: KeyWindow | None = None) -> None:
        self._keys[key.key_id] = key
        if window is not None:
            self._windows[key.key_id] = window

    def get(self, key_id: str) -> PublicKey | None:
        return self._keys.get(key_id)

    def window(self, key_id: str) -> KeyWindow | None:
        return self._windows.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_pems(cls, pems: Iterable[str | bytes]) -> Keyring:
        return cls(load_public_key(pem) for pem in pems)


def generate_key() -> PrivateKey:
    return PrivateKey(Ed25519PrivateKey.generate())


def save_private_key(key: PrivateKey, path: Path) -> None:
    """Write the private key as PEM, creating the file with mode 0600; an existing file is an error."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise SigningError("key_file_exists", f"key file {path} already exists", "choose another path or remove the old key first",
                           {"path": str(path)}) from None
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(key.private_pem())
    os.chmod(path, 0o600)


def save_public_key(key: PrivateKey | PublicKey, path: Path) -> None:
    Path(path).write_text(key.public_pem(), encoding="ascii")


def load_private_key(path: Path) -> PrivateKey:
    """Read an unencrypted Ed25519 private key from a PEM file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        details = os_error_details(error)
        raise SigningError("key_file_unreadable", f"cannot read key file {path}: {details['reason']}", "check the path given to --key",
                           {"path": str(path), **details}) from None
    try:
        crypto_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningError("key_invalid", f"{path} is not an unencrypted PEM private key", "create a key with `python -m agent keygen --out PATH`",
                           {"path": str(path)}) from None
    if not isinstance(crypto_key, Ed25519PrivateKey):
        raise SigningError("key_not_ed25519", f"{path} contains a {type(crypto_key).__name__}, not an Ed25519 key", "create a key with `python -m agent keygen --out PATH`",
                           {"path": str(path), "type": type(crypto_key).__name__})
    return PrivateKey(crypto_key)


def load_public_key(pem: str | bytes) -> PublicKey:
    """Parse an Ed25519 public key from SubjectPublicKeyInfo PEM text."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        crypto_key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningError("public_key_invalid", "the text is not a PEM public key", "pass the .pub file that `python -m agent keygen` wrote") from None
    if not isinstance(crypto_key, Ed25519PublicKey):
        raise SigningError("key_not_ed25519", f"the public key is a {type(crypto_key).__name__}, not an Ed25519 key", "use an Ed25519 key",
                           {"type": type(crypto_key).__name__})
    return PublicKey.from_crypto(crypto_key)


def load_public_key_file(path: Path) -> PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        details = os_error_details(error)
        raise SigningError("key_file_unreadable", f"cannot read public key file {path}: {details['reason']}", "check the path given to --public-key",
                           {"path": str(path), **details}) from None
    return load_public_key(data)
