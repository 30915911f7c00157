"""Property test: the archive reader accepts or rejects any input with a BundleError, never another exception."""

import io
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certification.archive import Limits
from certification.bundle import open_bundle
from certification.errors import BundleError
from certification.signing import Keyring, generate_key

KEYRING = Keyring([generate_key().public_key])
NAMES = st.text(alphabet=st.sampled_from("abAB./\\é\u0301-_ \n"), min_size=0, max_size=12)
TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE])
MEMBERS = st.lists(st.tuples(NAMES, TYPES, st.binary(max_size=64)), max_size=6)


def build_tar(members, mutations):
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name or "x")
            info.type = kind
            info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            info.linkname = "target" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    raw = bytearray(stream.getvalue())
    for offset, value in mutations:
        if raw:
            raw[offset % len(raw)] = value
    return bytes(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MEMBERS, st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4), st.booleans())
def test_reader_only_raises_bundle_errors(members, mutations, truncate):
    data = build_tar(members, mutations)
    if truncate:
        data = data[: len(data) // 3]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.tar"
        path.write_bytes(data)
        try:
            open_bundle(path, KEYRING, Limits(max_members=5))
        except BundleError as error:
            assert error.code
        else:
            raise AssertionError("an unsigned generated archive was accepted")


SAFE_NAMES = st.text(alphabet=st.sampled_from("abcXYZ09-_é中"), min_size=1, max_size=8)
CONTENTS = st.binary(max_size=3000).filter(lambda data: not data.startswith((b"\x1f\x8b", b"BZh", b"PK", b"7z", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd", b"Rar!")))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.lists(SAFE_NAMES, min_size=1, max_size=3).map("/".join), CONTENTS, min_size=1, max_size=5), st.data())
def test_signed_bundles_round_trip_and_reject_any_byte_change(files, data):
    from tests.certification.test_bundle import KEYRING, signed_members, write_canonical

    keys = {}
    for name in files:
        keys.setdefault(name.casefold(), name)
    files = {name: content for name, content in files.items() if keys[name.casefold()] == name and not any(other.startswith(name + "/") for other in files)}
    with tempfile.TemporaryDirectory() as folder:
        path = write_canonical(Path(folder) / "bundle.tar", signed_members(files))
        bundle = open_bundle(path, KEYRING)
        assert {name: bundle.read_bytes(name) for name in files} == files

        raw = bytearray(path.read_bytes())
        offset = data.draw(st.integers(0, len(raw) - 1))
        raw[offset] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
        try:
            open_bundle(path, KEYRING)
        except BundleError as error:
            assert error.code
        else:
            raise AssertionError(f"a bundle changed at byte {offset} was accepted")
