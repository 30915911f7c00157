"""looks_like_private_key on private keys pasted without armour, and on public keys and certificates that must pass."""

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from portal.registry.private_keys import looks_like_private_key

DER = serialization.Encoding.DER
RAW = serialization.NoEncryption()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED25519_KEY = ed25519.Ed25519PrivateKey.generate()


def body(der: bytes, width: int | None = 64) -> str:
    """Return the base64 of `der` as a PEM body without armour: lines of `width` characters, or one line."""
    text = base64.b64encode(der).decode("ascii")
    if width is None:
        return text
    return "\n".join(text[start:start + width] for start in range(0, len(text), width)) + "\n"


def self_signed_certificate() -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portal test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(EC_KEY.public_key())
    builder = builder.serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
    return builder.sign(EC_KEY, hashes.SHA256()).public_bytes(DER)


PRIVATE = {
    "rsa pkcs1": RSA_KEY.private_bytes(DER, serialization.PrivateFormat.TraditionalOpenSSL, RAW),
    "rsa pkcs8": RSA_KEY.private_bytes(DER, serialization.PrivateFormat.PKCS8, RAW),
    "ec sec1": EC_KEY.private_bytes(DER, serialization.PrivateFormat.TraditionalOpenSSL, RAW),
    "ec pkcs8": EC_KEY.private_bytes(DER, serialization.PrivateFormat.PKCS8, RAW),
    "ec pkcs8 encrypted": EC_KEY.private_bytes(DER, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"secret")),
    "ed25519 pkcs8": ED25519_KEY.private_bytes(DER, serialization.PrivateFormat.PKCS8, RAW),
}

PUBLIC = {
    "rsa spki": RSA_KEY.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    "rsa pkcs1 public": RSA_KEY.public_key().public_bytes(DER, serialization.PublicFormat.PKCS1),
    "ec spki": EC_KEY.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    "ed25519 spki": ED25519_KEY.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    "certificate": self_signed_certificate(),
}


@pytest.mark.parametrize("kind", PRIVATE)
@pytest.mark.parametrize("width", [64, None])
def test_unarmoured_private_key_detected(kind, width):
    assert looks_like_private_key(body(PRIVATE[kind], width))


@pytest.mark.parametrize("kind", PRIVATE)
def test_private_key_under_public_label_detected(kind):
    text = f"-----BEGIN PUBLIC KEY-----\n{body(PRIVATE[kind])}-----END PUBLIC KEY-----\n"

    assert looks_like_private_key(text)


def test_unarmoured_openssh_private_key_detected():
    text = ED25519_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, RAW).decode("ascii")
    unarmoured = "\n".join(line for line in text.splitlines() if not line.startswith("-----"))

    assert looks_like_private_key(unarmoured)


@pytest.mark.parametrize("kind", PUBLIC)
@pytest.mark.parametrize("width", [64, None])
def test_unarmoured_public_structure_passes(kind, width):
    assert not looks_like_private_key(body(PUBLIC[kind], width))


@pytest.mark.parametrize("kind", ["rsa spki", "ec spki", "ed25519 spki"])
def test_public_pem_passes(kind):
    text = f"-----BEGIN PUBLIC KEY-----\n{body(PUBLIC[kind])}-----END PUBLIC KEY-----\n"

    assert not looks_like_private_key(text)


def test_openssh_public_key_passes():
    text = ED25519_KEY.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode("ascii")

    assert not looks_like_private_key(text)


@pytest.mark.parametrize("text", [
    "",
    "hello world",
    "not base64 at all: ***",
    base64.b64encode(b"\x30\x03\x02\x01\x00").decode("ascii"),  # a SEQUENCE of one INTEGER 0
    base64.b64encode(b"\x30\x84\xff\xff\xff\xff\x02\x01\x00").decode("ascii"),  # a length past the end
])
def test_other_text_passes(text):
    assert not looks_like_private_key(text)
