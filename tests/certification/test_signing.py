import stat

import pytest

from certification.signing import (
    Keyring,
    SigningError,
    generate_key,
    load_private_key,
    load_public_key,
    load_public_key_file,
    save_private_key,
    save_public_key,
)


def test_private_key_round_trip(tmp_path):
    key = generate_key()
    path = tmp_path / "vendor.key"
    save_private_key(key, path)

    loaded = load_private_key(path)

    assert loaded.key_id == key.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_public_key_round_trip(tmp_path):
    key = generate_key()
    save_public_key(key, tmp_path / "vendor.pub")

    public = load_public_key_file(tmp_path / "vendor.pub")

    assert public.key_id == key.key_id
    assert public.public_pem() == key.public_pem()


def test_signature_verifies_only_same_data():
    key = generate_key()
    signature = key.signer.sign(b"payload")
    public = load_public_key(key.public_pem())

    assert public.verify(signature, b"payload")
    assert not public.verify(signature, b"payloaD")


def test_other_key_does_not_verify():
    signature = generate_key().signer.sign(b"payload")
    other = generate_key().public_key

    assert not other.verify(signature, b"payload")


def test_key_ids_differ_between_keys():
    assert generate_key().key_id != generate_key().key_id


def test_save_rejects_existing_file(tmp_path):
    path = tmp_path / "vendor.key"
    path.write_text("old")

    with pytest.raises(SigningError) as caught:
        save_private_key(generate_key(), path)

    assert caught.value.code == "key_file_exists"
    assert path.read_text() == "old"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not a key", "public_key_invalid"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "public_key_invalid"),
    ],
)
def test_load_public_key_rejects(text, code):
    with pytest.raises(SigningError) as caught:
        load_public_key(text)

    assert caught.value.code == code


def test_load_private_key_rejects_public_pem(tmp_path):
    path = tmp_path / "vendor.key"
    path.write_text(generate_key().public_pem())

    with pytest.raises(SigningError) as caught:
        load_private_key(path)

    assert caught.value.code == "key_invalid"


def test_keyring_lookup_by_key_id():
    first, second = generate_key(), generate_key()
    keyring = Keyring.from_pems([first.public_pem(), second.public_pem()])

    assert len(keyring) == 2
    assert keyring.get(first.key_id).key_id == first.key_id
    assert keyring.get("unknown") is None
