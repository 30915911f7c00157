import hashlib
import io
import json
import os
import tarfile

import pytest

from certification.archive import ArchiveWriter, Limits
from certification.bundle import (
    ENVELOPE_NAME,
    MANIFEST_NAME,
    build_manifest,
    encode_manifest,
    open_bundle,
    sign_manifest,
    write_bundle,
)
from certification.errors import BundleError
from certification.signing import Keyring, generate_key
from tests.certification.runfolder import build_run

KEY = generate_key()
KEYRING = Keyring([KEY.public_key])


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    run_dir = build_run(root / "run", workloads=("pretrain-llama",), steps=40, lambada_items=50)
    info = write_bundle(run_dir, root / "run.tar", KEY)
    return run_dir, info


def assert_rejected(path, code, keyring=KEYRING, limits=Limits()):
    with pytest.raises(BundleError) as caught:
        open_bundle(path, keyring, limits)
    assert caught.value.code == code, caught.value
    return caught.value


def write_canonical(path, members):
    with open(path, "wb") as stream:
        writer = ArchiveWriter(stream)
        for name, data in members:
            writer.add(name, data)
        writer.close()
    return path


def signed_members(files, key=KEY, manifest_edit=None):
    """Return canonical members with a valid manifest and envelope for `files` (name to bytes)."""
    entries = [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()]
    run = {"run_id": "r", "started_at": "2026-01-01T00:00:00Z", "rule_pack": {"name": "demo-2026.1", "sha256": "0" * 64}}
    manifest = build_manifest(run, entries)
    if manifest_edit:
        manifest_edit(manifest)
    manifest_bytes = encode_manifest(manifest)
    envelope = sign_manifest(manifest, manifest_bytes, key)
    return [*files.items(), (MANIFEST_NAME, manifest_bytes), (ENVELOPE_NAME, envelope)]


def write_hostile(path, infos):
    """Write a tar with arbitrary members: (TarInfo, data or None)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_round_trip_reads_every_file(packed):
    run_dir, info = packed

    bundle = open_bundle(info.path, KEYRING)

    assert bundle.key_id == KEY.key_id
    assert bundle.bundle_id == info.bundle_id
    assert bundle.workloads() == ["pretrain-llama"]
    assert bundle.read_bytes("run.json") == (run_dir / "run.json").read_bytes()
    assert bundle.read_json("workloads/pretrain-llama/validation.json")["loss"] == 3.0
    assert len(list(bundle.iter_jsonl("workloads/pretrain-llama/steps.jsonl"))) == 40
    assert bundle.has("environment.json")
    assert not bundle.has("missing.json")


def test_manifest_names_run_and_files(packed):
    _, info = packed

    manifest = open_bundle(info.path, KEYRING).manifest

    assert manifest["schema_version"] == 1
    assert manifest["rule_pack"]["name"] == "demo-2026.1"
    assert manifest["run"]["started_at"] == "2026-01-01T00:00:00+00:00"
    assert manifest["vendor"] == "Example Vendor"
    assert {entry["path"] for entry in manifest["files"]} >= {"run.json", "workloads/pretrain-llama/steps.jsonl"}
    assert info.file_count == len(manifest["files"])


def test_packing_is_deterministic_apart_from_ids(tmp_path, packed):
    run_dir, info = packed

    second = write_bundle(run_dir, tmp_path / "again.tar", KEY)

    assert second.size == info.size
    assert second.bundle_id != info.bundle_id


def data_offsets(path):
    """Return the set of offsets that hold member contents, as opposed to headers, padding and end blocks."""
    with tarfile.open(path) as tar:
        return {offset for info in tar.getmembers() for offset in range(info.offset_data, info.offset_data + info.size)}


def test_every_byte_change_is_rejected(tmp_path, packed):
    _, info = packed
    original = info.path.read_bytes()
    contents = data_offsets(info.path)
    target = tmp_path / "changed.tar"
    # Every byte outside member contents is flipped; contents are sampled with
    # a prime stride because their sha256 is checked the same way everywhere.
    offsets = [offset for offset in range(len(original)) if offset not in contents or offset % 11 == 0]
    accepted = []
    for offset in offsets:
        changed = bytearray(original)
        changed[offset] ^= 0x01
        target.write_bytes(bytes(changed))
        try:
            open_bundle(target, KEYRING)
        except BundleError:
            continue
        accepted.append(offset)

    assert accepted == []


def test_truncated_and_extended_archives_rejected(tmp_path, packed):
    _, info = packed
    original = info.path.read_bytes()

    for data in (original[:-1], original + b"\0", original[: len(original) // 2], b""):
        target = tmp_path / "cut.tar"
        target.write_bytes(data)
        with pytest.raises(BundleError):
            open_bundle(target, KEYRING)


def test_unknown_key_rejected(packed):
    _, info = packed

    error = assert_rejected(info.path, "signature_key_unknown", keyring=Keyring([generate_key().public_key]))

    assert KEY.key_id in error.message


def test_empty_keyring_rejected(packed):
    _, info = packed

    assert_rejected(info.path, "signature_key_unknown", keyring=Keyring())


@pytest.mark.parametrize(
    ("members", "code"),
    [
        ([regular("/etc/passwd")], "path_absolute"),
        ([regular("../escape.txt")], "path_parent"),
        ([regular("workloads/../../x")], "path_parent"),
        ([regular("a\\b.txt")], "path_backslash"),
        ([regular("a//b.txt")], "path_invalid"),
        ([regular("./a.txt")], "path_invalid"),
        ([regular("a\nb.txt")], "path_invalid"),
        ([regular("run.json"), regular("run.json")], "path_duplicate"),
        ([regular("Run.json"), regular("run.json")], "path_duplicate"),
        ([regular("caf\u00e9.txt"), regular("cafe\u0301.txt")], "path_duplicate"),
        ([special("link", tarfile.SYMTYPE, "/etc/passwd")], "member_link"),
        ([regular("a.txt"), special("hard", tarfile.LNKTYPE, "a.txt")], "member_link"),
        ([special("dev", tarfile.CHRTYPE)], "member_special"),
        ([special("blk", tarfile.BLKTYPE)], "member_special"),
        ([special("fifo", tarfile.FIFOTYPE)], "member_special"),
        ([special("cont", tarfile.CONTTYPE)], "member_type_unsupported"),
    ],
)
def test_hostile_member_rejected(tmp_path, members, code):
    path = write_hostile(tmp_path / "hostile.tar", members)

    assert_rejected(path, code)


def test_non_canonical_header_rejected(tmp_path):
    members = signed_members({"run.json": b"{}\n"})
    infos = []
    for name, data in members:
        info, _ = regular(name, data)
        info.mtime = 1_700_000_000
        infos.append((info, data))
    path = write_hostile(tmp_path / "mtime.tar", infos)

    assert_rejected(path, "archive_not_canonical")


def test_compressed_archive_rejected(tmp_path):
    path = tmp_path / "bundle.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info, data = regular("run.json", b"{}")
        tar.addfile(info, io.BytesIO(data))

    assert_rejected(path, "archive_compressed")


def test_not_a_tar_rejected(tmp_path):
    path = tmp_path / "bundle.tar"
    path.write_bytes(b"hello" * 300)

    assert_rejected(path, "archive_invalid")


def test_missing_file_rejected(tmp_path):
    assert_rejected(tmp_path / "absent.tar", "archive_unreadable")


def test_folder_path_rejected(tmp_path):
    assert_rejected(tmp_path, "archive_unreadable")


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        (Limits(max_members=3), "member_count_exceeded"),
        (Limits(max_member_bytes=100), "member_too_large"),
        (Limits(max_total_bytes=1000), "archive_too_large"),
        (Limits(max_archive_bytes=2048), "archive_too_large"),
    ],
)
def test_budget_limits_rejected(tmp_path, limits, code):
    members = signed_members({"a.json": b"[" + b"1," * 300 + b"1]", "b.json": b"{}", "c.json": b"{}"})
    path = write_canonical(tmp_path / "big.tar", members)

    assert_rejected(path, code, limits=limits)


def test_canonical_signed_archive_accepted(tmp_path):
    path = write_canonical(tmp_path / "ok.tar", signed_members({"run.json": b"{}\n", "workloads/w/steps.jsonl": b""}))

    bundle = open_bundle(path, KEYRING)

    assert bundle.workloads() == ["w"]


def test_member_not_in_manifest_rejected(tmp_path):
    members = signed_members({"run.json": b"{}"}) + [("extra.txt", b"x")]
    path = write_canonical(tmp_path / "extra.tar", members)

    assert_rejected(path, "member_not_in_manifest")


def test_manifest_entry_without_member_rejected(tmp_path):
    members = [member for member in signed_members({"run.json": b"{}", "gone.txt": b"x"}) if member[0] != "gone.txt"]
    path = write_canonical(tmp_path / "gone.tar", members)

    assert_rejected(path, "member_missing")


def test_replaced_file_rejected(tmp_path):
    members = [(name, b"{}" if name == "run.json" else data) for name, data in signed_members({"run.json": b"[]"})]
    path = write_canonical(tmp_path / "replaced.tar", members)

    assert_rejected(path, "file_digest_mismatch")


def test_size_mismatch_rejected(tmp_path):
    def lie_about_size(manifest):
        manifest["files"][0]["size"] = 3

    path = write_canonical(tmp_path / "size.tar", signed_members({"run.json": b"[]"}, manifest_edit=lie_about_size))

    assert_rejected(path, "file_size_mismatch")


def test_replaced_manifest_rejected(tmp_path):
    members = signed_members({"run.json": b"[]"})
    other = dict(signed_members({"run.json": b"[]"}))
    members = [(name, other[MANIFEST_NAME] if name == MANIFEST_NAME else data) for name, data in members]
    path = write_canonical(tmp_path / "manifest.tar", members)

    error = assert_rejected(path, "subject_digest_mismatch")

    signed, actual = error.value.split(" / ")
    assert len(signed) == len(actual) == 64
    assert signed != actual


def test_envelope_from_other_key_rejected(tmp_path):
    impostor = generate_key()
    keyring = Keyring([KEY.public_key, impostor.public_key])
    members = signed_members({"run.json": b"[]"}, key=impostor)
    envelope = json.loads(dict(members)[ENVELOPE_NAME])
    envelope["signatures"][0]["keyid"] = KEY.key_id
    edited = (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()
    members = [(name, edited if name == ENVELOPE_NAME else data) for name, data in members]
    path = write_canonical(tmp_path / "impostor.tar", members)

    assert_rejected(path, "signature_invalid", keyring=keyring)


def test_reformatted_envelope_rejected(tmp_path):
    members = signed_members({"run.json": b"[]"})
    compact = json.dumps(json.loads(dict(members)[ENVELOPE_NAME])).encode()
    members = [(name, compact if name == ENVELOPE_NAME else data) for name, data in members]
    path = write_canonical(tmp_path / "compact.tar", members)

    assert_rejected(path, "envelope_not_canonical")


def test_missing_manifest_and_envelope_rejected(tmp_path):
    members = signed_members({"run.json": b"[]"})

    no_manifest = write_canonical(tmp_path / "a.tar", [m for m in members if m[0] != MANIFEST_NAME])
    no_envelope = write_canonical(tmp_path / "b.tar", [m for m in members if m[0] != ENVELOPE_NAME])

    assert_rejected(no_manifest, "manifest_missing")
    assert_rejected(no_envelope, "envelope_missing")


def test_manifest_schema_violation_rejected(tmp_path):
    def break_version(manifest):
        manifest["schema_version"] = 2

    path = write_canonical(tmp_path / "v2.tar", signed_members({"run.json": b"[]"}, manifest_edit=break_version))

    error = assert_rejected(path, "manifest_invalid")

    assert error.value == "schema_version"
    assert error.details["keyword"] == "const"
    assert error.details["schema_code"] == "schema_const"
    assert error.details["schema_value"] == "2"
    assert error.message == "manifest.json is invalid at schema_version: 1 was expected"


@pytest.mark.parametrize("card", ["X100", ["X100"], 7, True])
def test_manifest_card_not_object_rejected(tmp_path, card):
    def set_card(manifest):
        manifest["card"] = card

    path = write_canonical(tmp_path / "card.tar", signed_members({"run.json": b"[]"}, manifest_edit=set_card))

    error = assert_rejected(path, "manifest_invalid")

    assert error.value == "card"
    assert error.message == f"manifest.json is invalid at card: {card!r} is not of type 'object', 'null'"


def test_writer_rejects_bare_nan(tmp_path):
    run_dir = build_run(tmp_path / "run", workloads=("pretrain-llama",), steps=40, lambada_items=10)
    steps = run_dir / "workloads/pretrain-llama/steps.jsonl"
    steps.write_text(steps.read_text().replace('"grad_norm": 1.0', '"grad_norm": NaN', 1))

    with pytest.raises(BundleError) as caught:
        write_bundle(run_dir, tmp_path / "out.tar", KEY)

    assert caught.value.code == "json_non_finite"
    assert caught.value.value == "workloads/pretrain-llama/steps.jsonl"
    assert caught.value.details == {"line": 1}
    assert caught.value.message == "bare NaN or Infinity token in workloads/pretrain-llama/steps.jsonl at line 1"
    assert not (tmp_path / "out.tar").exists()
    assert not (tmp_path / "out.tar.partial").exists()


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda run: (run / "environment.json").write_text("{"), "json_invalid"),
        (lambda run: (run / "manifest.json").write_text("{}"), "run_file_reserved"),
        (lambda run: os.symlink("/etc/passwd", run / "link"), "run_file_link"),
        (lambda run: (run / "run.json").unlink(), "run_json_missing"),
        (lambda run: (run / "run.json").write_text('{"run_id": "x"}'), "run_json_invalid"),
        (lambda run: (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), "card": "X100"})), "run_json_invalid"),
    ],
)
def test_writer_rejects_bad_run_folder(tmp_path, edit, code):
    run_dir = build_run(tmp_path / "run", workloads=())
    edit(run_dir)

    with pytest.raises(BundleError) as caught:
        write_bundle(run_dir, tmp_path / "out.tar", KEY)

    assert caught.value.code == code


def test_writer_names_run_json_folder(tmp_path):
    run_dir = build_run(tmp_path / "run", workloads=())
    (run_dir / "run.json").unlink()
    (run_dir / "run.json").mkdir()

    with pytest.raises(BundleError) as caught:
        write_bundle(run_dir, tmp_path / "out.tar", KEY)

    assert caught.value.code == "run_file_unreadable"
    assert caught.value.value == str(run_dir / "run.json")
    assert caught.value.details["errno"] == "EISDIR"
    assert not (tmp_path / "out.tar.partial").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
@pytest.mark.parametrize("path", ["run.json", "environment.json", "workloads/pretrain-llama/train.log"])
def test_writer_names_unreadable_run_file(tmp_path, path):
    run_dir = build_run(tmp_path / "run", workloads=("pretrain-llama",))
    (run_dir / "workloads/pretrain-llama/train.log").write_text("step 1\n")
    (run_dir / path).chmod(0)

    with pytest.raises(BundleError) as caught:
        write_bundle(run_dir, tmp_path / "out.tar", KEY)

    assert caught.value.code == "run_file_unreadable"
    assert caught.value.value == str(run_dir / path)
    assert caught.value.details["errno"] == "EACCES"
    assert not (tmp_path / "out.tar.partial").exists()


@pytest.mark.parametrize(("path", "text", "line", "column", "problem"), [
    ("environment.json", "{\n  \"a\": 1,\n}", 3, 1, "Expecting property name enclosed in double quotes"),
    ("run.json", "", 1, 1, "Expecting value"),
    ("events.jsonl", '{"event": "start"}\n{"event": }\n', 2, 11, "Expecting value"),
])
def test_writer_names_json_error_position(tmp_path, path, text, line, column, problem):
    run_dir = build_run(tmp_path / "run", workloads=())
    (run_dir / path).write_text(text, encoding="utf-8")

    with pytest.raises(BundleError) as caught:
        write_bundle(run_dir, tmp_path / "out.tar", KEY)

    assert caught.value.code == "json_invalid"
    assert caught.value.value == path
    assert caught.value.details == {"line": line, "column": column, "problem": problem}


def test_writer_names_undecodable_byte(tmp_path):
    run_dir = build_run(tmp_path / "run", workloads=())
    (run_dir / "events.jsonl").write_bytes(b'{"event": "start"}\n{"event": "\xff"}\n')

    with pytest.raises(BundleError) as caught:
        write_bundle(run_dir, tmp_path / "out.tar", KEY)

    assert caught.value.code == "json_invalid"
    assert caught.value.details == {"line": 2, "column": 12, "problem": "not UTF-8 text"}


@pytest.mark.parametrize(("text", "path"), [
    ("[]", "$"),
    ('{"run_id": "x"}', "$.started_at"),
    ('{"run_id": "x", "started_at": "t", "rule_pack": "demo"}', "$.rule_pack"),
    ('{"run_id": "x", "started_at": "t", "rule_pack": {"name": "demo", "sha256": 1}}', "$.rule_pack.sha256"),
])
def test_writer_names_run_json_path(tmp_path, text, path):
    run_dir = build_run(tmp_path / "run", workloads=())
    (run_dir / "run.json").write_text(text, encoding="utf-8")

    with pytest.raises(BundleError) as caught:
        write_bundle(run_dir, tmp_path / "out.tar", KEY)

    assert caught.value.code == "run_json_invalid"
    assert caught.value.value == path


def test_writer_rejects_missing_folder(tmp_path):
    with pytest.raises(BundleError) as caught:
        write_bundle(tmp_path / "absent", tmp_path / "out.tar", KEY)

    assert caught.value.code == "run_dir_missing"


def test_read_unknown_file_raises(packed):
    _, info = packed
    bundle = open_bundle(info.path, KEYRING)

    with pytest.raises(BundleError) as caught:
        bundle.read_bytes("workloads/absent/steps.jsonl")

    assert caught.value.code == "file_not_in_bundle"


def test_model_folders_left_out(tmp_path):
    run_dir = build_run(tmp_path / "run", workloads=("pretrain-llama",))
    for folder in ("models/pretrain-llama", "checkpoints/checkpoint-10"):
        (run_dir / folder).mkdir(parents=True)
        (run_dir / folder / "model_state.pdparams").write_bytes(b"weights")
    (run_dir / "workloads" / "pretrain-llama" / "models").mkdir()
    (run_dir / "workloads" / "pretrain-llama" / "models" / "note.txt").write_text("kept")

    bundle = open_bundle(write_bundle(run_dir, tmp_path / "run.tar", KEY).path, KEYRING)

    assert not any(path.startswith(("models/", "checkpoints/")) for path in bundle.paths())
    assert bundle.has("workloads/pretrain-llama/models/note.txt")


# Refusals added with the streaming reader ----------------------------------


def non_utf8_tar(path):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        info, data = regular("caf\u00e9.json", b"{}")
        tar.addfile(info, io.BytesIO(data))
    return path


def folder_with_content(path):
    info = tarfile.TarInfo("workloads")
    info.type = tarfile.DIRTYPE
    info.size = 5
    return write_hostile(path, [(info, b"hello")])


def nested_archive(path):
    gzip_bytes = b"\x1f\x8b\x08\x00" + bytes(20)
    return write_canonical(path, [("workloads/w/inner.bin", gzip_bytes)])


def nested_tar(path):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as tar:
        info, data = regular("x.json", b"{}")
        tar.addfile(info, io.BytesIO(data))
    return write_canonical(path, [("workloads/w/inner.dat", inner.getvalue())])


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (non_utf8_tar, "path_not_utf8"),
        (folder_with_content, "folder_has_content"),
        (nested_archive, "member_nested_archive"),
        (nested_tar, "member_nested_archive"),
        (lambda path: write_hostile(path, [regular("C:/windows/x.json")]), "path_absolute"),
    ],
)
def test_streaming_reader_refusals(tmp_path, build, code):
    assert_rejected(build(tmp_path / "hostile.tar"), code)


def test_refusal_happens_before_anything_is_read_back(tmp_path, packed):
    """A refused bundle yields no VerifiedBundle, so no caller ever reads a member of it."""
    _, info = packed
    data = bytearray(info.path.read_bytes())
    data[-1] = 1
    path = tmp_path / "tail.tar"
    path.write_bytes(bytes(data))

    assert_rejected(path, "archive_not_canonical")


def test_change_after_verification_is_detected(tmp_path, packed):
    run_dir, info = packed
    path = tmp_path / "copy.tar"
    path.write_bytes(info.path.read_bytes())
    bundle = open_bundle(path, KEYRING)
    member = bundle.members["run.json"]
    with open(path, "r+b") as stream:
        stream.seek(member.offset)
        stream.write(b"[")

    with pytest.raises(BundleError) as caught:
        bundle.read_json("run.json")
    assert caught.value.code == "file_changed_after_verification"


def test_large_member_is_streamed_not_held(tmp_path):
    """A 3 MiB binary member verifies and is read back only when asked for."""
    run_dir = build_run(tmp_path / "run", workloads=("pretrain-llama",), steps=40, lambada_items=50)
    blob = os.urandom(3 * 1024 * 1024)
    (run_dir / "workloads" / "pretrain-llama" / "samples.bin").write_bytes(blob)
    info = write_bundle(run_dir, tmp_path / "big.tar", KEY)

    bundle = open_bundle(info.path, KEYRING)

    assert bundle.read_bytes("workloads/pretrain-llama/samples.bin") == blob


def windowed_keyring(**window):
    from certification.signing import KeyWindow

    keyring = Keyring()
    keyring.add(KEY.public_key, KeyWindow(**window))
    return keyring


@pytest.mark.parametrize(
    ("window", "code"),
    [
        ({"revoked_at": "past"}, "signature_key_revoked"),
        ({"valid_from": "future"}, "signature_key_outside_window"),
        ({"valid_until": "past"}, "signature_key_outside_window"),
        ({"revoked_at": "future"}, None),
        ({"valid_from": "past", "valid_until": "future"}, None),
    ],
)
def test_key_window_at_signing_time(packed, window, code):
    from datetime import datetime, timedelta, timezone

    _, info = packed
    created = datetime.fromisoformat(open_bundle(info.path, KEYRING).manifest["created_at"])
    moments = {"past": created - timedelta(days=1), "future": created + timedelta(days=1)}
    keyring = windowed_keyring(**{key: moments[value] for key, value in window.items()})

    if code is None:
        assert open_bundle(info.path, keyring).key_id == KEY.key_id
    else:
        assert_rejected(info.path, code, keyring=keyring)


def test_truncated_member_named_with_byte_counts(tmp_path, packed):
    _, info = packed
    original = info.path.read_bytes()
    with tarfile.open(info.path) as archive:
        member = next(item for item in archive.getmembers() if item.size > 1)
    target = tmp_path / "cut.tar"
    target.write_bytes(original[: member.offset_data + 1])

    error = assert_rejected(target, "member_truncated")

    assert error.value == f"{member.name}: 1 B / {member.size} B"
