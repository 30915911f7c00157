"""Tell a pasted private key from a public key, so that the portal rejects it before anything stores or logs it.

A private key is recognised by its PEM armour. Pasted without armour, it is
recognised by the ASN.1 structure of its base64 body. The structures are
PKCS#1 RSAPrivateKey (RFC 8017), PKCS#8 PrivateKeyInfo, OneAsymmetricKey and
EncryptedPrivateKeyInfo (RFC 5958, which also covers the agent's Ed25519
keys), and SEC1 ECPrivateKey (RFC 5915). An OpenSSH private key body is
recognised by its magic bytes. Public keys (SubjectPublicKeyInfo,
PKCS#1 RSAPublicKey) and certificates have other structures, so they never
match.

NOTE: a body cut short (part of a key pasted) no longer parses, so it is not
detected unless it keeps the Ed25519 prefix below.
"""

from __future__ import annotations

import base64
import binascii
import re

# PEM armour of any private key: PKCS#8 ("PRIVATE KEY", as `python -m agent keygen` writes it),
# "ENCRYPTED PRIVATE KEY", and the RSA, EC and OpenSSH forms.
PRIVATE_KEY_ARMOUR = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
# The base64 start of a PKCS#8 Ed25519 private key, for a key pasted without its armour lines.
PKCS8_ED25519_PREFIX = "MC4CAQAwBQYDK2Vw"
# The first bytes of the body of an OpenSSH private key file (OpenSSH's PROTOCOL.key).
OPENSSH_PRIVATE_MAGIC = b"openssh-key-v1\x00"
# Any PEM boundary line, such as "-----END PUBLIC KEY-----", removed before the body is decoded.
BOUNDARY_LINE = re.compile(r"^-----[^\n]*-----$", re.MULTILINE)

# DER tags (X.690) of the elements these structures use.
INTEGER, BIT_STRING, OCTET_STRING, OID, SEQUENCE = 0x02, 0x03, 0x04, 0x06, 0x30
CONTEXT_0, CONTEXT_1 = 0xA0, 0xA1


def looks_like_private_key(text: str) -> bool:
    """Return True when the text contains a private key, so that it is rejected before anything else reads it."""
    if PRIVATE_KEY_ARMOUR.search(text) or "".join(text.split()).startswith(PKCS8_ED25519_PREFIX):
        return True
    body = _base64_body(text)
    if body is None:
        return False
    return body.startswith(OPENSSH_PRIVATE_MAGIC) or is_der_private_key(body)


def is_der_private_key(der: bytes) -> bool:
    """Return True when `der` is one DER SEQUENCE shaped as a PKCS#1, PKCS#8 or SEC1 private key.

    Only the structure is checked, not the numbers, so a key of an algorithm or curve that no library
    here supports still counts.
    """
    outer = _read_element(der, 0)
    if outer is None or outer[0] != SEQUENCE or outer[2] != len(der):
        return False
    fields = _children(der[outer[1]:outer[2]])
    if fields is None:
        return False
    return _is_pkcs1_rsa(fields) or _is_pkcs8(fields) or _is_pkcs8_encrypted(fields) or _is_sec1_ec(fields)


def _is_pkcs1_rsa(fields: list[tuple[int, bytes]]) -> bool:
    """RSAPrivateKey: version 0 (two primes) or 1 (more primes), then n, e, d, p, q, d mod (p-1), d mod (q-1), q^-1 mod p."""
    return len(fields) >= 9 and all(tag == INTEGER for tag, _ in fields[:9]) and fields[0][1] in (b"\x00", b"\x01")


def _is_pkcs8(fields: list[tuple[int, bytes]]) -> bool:
    """PrivateKeyInfo or OneAsymmetricKey: version 0 or 1, an AlgorithmIdentifier, the key as an OCTET STRING, optional [0] and [1]."""
    if len(fields) < 3 or fields[0] not in ((INTEGER, b"\x00"), (INTEGER, b"\x01")):
        return False
    return _is_algorithm(fields[1]) and fields[2][0] == OCTET_STRING and all(tag in (CONTEXT_0, CONTEXT_1) for tag, _ in fields[3:])


def _is_pkcs8_encrypted(fields: list[tuple[int, bytes]]) -> bool:
    """EncryptedPrivateKeyInfo: an AlgorithmIdentifier, then the encrypted key as an OCTET STRING.

    A SubjectPublicKeyInfo has the same shape with a BIT STRING in place of the OCTET STRING.
    """
    return len(fields) == 2 and _is_algorithm(fields[0]) and fields[1][0] == OCTET_STRING


def _is_sec1_ec(fields: list[tuple[int, bytes]]) -> bool:
    """ECPrivateKey: version 1, the private key as an OCTET STRING, then optional [0] curve parameters and [1] public key."""
    if len(fields) < 2 or fields[0] != (INTEGER, b"\x01") or fields[1][0] != OCTET_STRING:
        return False
    return all(tag in (CONTEXT_0, CONTEXT_1) for tag, _ in fields[2:])


def _is_algorithm(field: tuple[int, bytes]) -> bool:
    """AlgorithmIdentifier: a SEQUENCE that starts with an OBJECT IDENTIFIER."""
    tag, value = field
    parts = _children(value) if tag == SEQUENCE else None
    return bool(parts) and parts[0][0] == OID


def _base64_body(text: str) -> bytes | None:
    """Decode the text as base64 once PEM boundary lines and white space are removed; None when it is not base64."""
    compact = "".join(BOUNDARY_LINE.sub("", text).split())
    if not compact:
        return None
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _children(data: bytes) -> list[tuple[int, bytes]] | None:
    """Split `data` into its DER elements as (tag, value) pairs; None unless the elements fill it exactly."""
    elements = []
    offset = 0
    while offset < len(data):
        element = _read_element(data, offset)
        if element is None:
            return None
        tag, start, end = element
        elements.append((tag, data[start:end]))
        offset = end
    return elements


def _read_element(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """Read the DER element at `offset` and return its tag and the start and end of its value; None when it is malformed.

    Only the one-byte tags and the definite lengths that DER allows are read.
    """
    if offset + 2 > len(data) or data[offset] & 0x1F == 0x1F:
        return None
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            return None
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        return None
    return tag, start, end
