"""Result bundles: a run folder packed into one signed, verifiable tar archive.

The archive contains every file of the run folder, `manifest.json` (the sha256
and size of every file) and `envelope.dsse.json`: a DSSE envelope over an
in-toto v1 statement whose only subject is `manifest.json`. Verification
checks the signature over the payload bytes as stored, the subject digest over
the manifest bytes as stored, and every file against the manifest, so nothing
is parsed and re-serialised before its digest is checked. docs/bundle-format.md
describes every key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError

from certification import records
from certification.archive import ArchiveIndex, ArchiveWriter, Limits, Member, check_member_path, path_key, read_archive, read_member
from certification.errors import BundleError, os_error_details
from certification.rulepack_schema import schema_problem
from certification.signing import Keyring, PrivateKey

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
ENVELOPE_NAME = "envelope.dsse.json"
RESERVED_NAMES = frozenset({MANIFEST_NAME, ENVELOPE_NAME})
# Top-level folders of a run that hold model weights and checkpoints. They
# are gigabytes on real clusters and nothing in a verdict reads them, so the
# bundle leaves them out.
UNPACKED_FOLDERS = frozenset({"models", "checkpoints"})
# Top-level files of a run that are no result: the agent's run-folder lock
# (the ids and hosts of the processes that ran) and its log of the run (the
# terminal's lines with the tracebacks of failed workloads, for the lab).
UNPACKED_FILES = frozenset({"run.lock", "agent.log"})
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# The host is under the reserved .invalid domain (RFC 2606) because the
# predicate is our own and has no public page. The name only has to be unique.
PREDICATE_TYPE = "https://accel-cert.invalid/result-bundle/v1"
MANIFEST_SCHEMA_PATH = Path(__file__).parent / "schema" / "manifest.schema.json"


@dataclass(frozen=True)
class BundleInfo:
    """Summary of a written bundle: the archive path, ids and the archive's sha256."""

    path: Path
    bundle_id: str
    key_id: str
    sha256: str
    size: int
    file_count: int


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature, manifest and every file have been verified.

    File contents are not held in memory: each read goes back to the archive
    at the offset found during verification and checks the bytes against the
    sha256 of that pass, so memory stays bounded whatever the bundle's size.
    """

    manifest: dict[str, Any]
    key_id: str
    statement: dict[str, Any]
    archive_path: Path
    members: Mapping[str, Member] = field(repr=False)

    @property
    def bundle_id(self) -> str:
        return self.manifest["bundle_id"]

    @property
    def rule_pack(self) -> dict[str, str]:
        return self.manifest["rule_pack"]

    @property
    def ticket(self) -> Any:
        return self.manifest.get("ticket")

    def paths(self) -> list[str]:
        return sorted(self.members)

    def has(self, path: str) -> bool:
        return path in self.members

    def read_bytes(self, path: str) -> bytes:
        if path not in self.members:
            raise BundleError("file_not_in_bundle", path)
        return read_member(self.archive_path, self.members[path])

    def read_json(self, path: str) -> Any:
        try:
            return records.loads(self.read_bytes(path))
        except ValueError as error:
            raise json_error(path, error) from None

    def iter_jsonl(self, path: str) -> Iterator[dict]:
        lines = self.read_bytes(path).splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield records.loads(line)
            except ValueError as error:
                raise json_error(path, error, line=number) from None

    def workloads(self) -> list[str]:
        """Return the workload ids, the folder names under `workloads/`, sorted."""
        names = {path.split("/")[1] for path in self.members if path.startswith("workloads/") and path.count("/") >= 2}
        return sorted(names)


# Packing -------------------------------------------------------------------


def write_bundle(run_dir: Path, out_path: Path, signer: PrivateKey) -> BundleInfo:
    """Pack `run_dir` into a signed archive at `out_path`, written atomically."""
    run_dir, out_path = Path(run_dir), Path(out_path)
    run = read_run_json(run_dir)
    paths = list_run_files(run_dir)
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        manifest = _write_archive(run_dir, paths, run, partial, signer)
        os.replace(partial, out_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    sha256, size = file_sha256(out_path)
    return BundleInfo(out_path, manifest["bundle_id"], signer.key_id, sha256, size, len(paths))


def file_sha256(path: Path) -> tuple[str, int]:
    """Return the hex sha256 and size of a file, read in blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as stream:
        while block := stream.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _write_archive(run_dir: Path, paths: list[str], run: dict, out_path: Path, signer: PrivateKey) -> dict:
    with open(out_path, "wb") as stream:
        writer = ArchiveWriter(stream)
        entries = [_add_run_file(writer, run_dir, path) for path in paths]
        manifest = build_manifest(run, entries)
        manifest_bytes = encode_manifest(manifest)
        writer.add(MANIFEST_NAME, manifest_bytes)
        writer.add(ENVELOPE_NAME, sign_manifest(manifest, manifest_bytes, signer))
        writer.close()
    return manifest


def read_run_json(run_dir: Path) -> dict:
    """Read the run folder's run.json, raising BundleError when the folder or the file is missing or invalid."""
    if not run_dir.is_dir():
        raise BundleError("run_dir_missing", str(run_dir))
    path = run_dir / "run.json"
    if not path.exists():
        raise BundleError("run_json_missing", str(run_dir))
    try:
        run = records.loads(_read_run_file(path).decode("utf-8"))
    except ValueError as error:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise json_error("run.json", error) from None
    _check_run_keys(run)
    return run


def _check_run_keys(run: Any) -> None:
    if not isinstance(run, dict):
        raise BundleError("run_json_invalid", "$")
    for key in ("run_id", "started_at", "rule_pack"):
        if not run.get(key):
            raise BundleError("run_json_invalid", f"$.{key}")
    rule_pack = run["rule_pack"]
    if not isinstance(rule_pack, dict):
        raise BundleError("run_json_invalid", "$.rule_pack")
    for key in ("name", "sha256"):
        if not isinstance(rule_pack.get(key), str):
            raise BundleError("run_json_invalid", f"$.rule_pack.{key}")
    if not isinstance(run.get("card", {}), (dict, type(None))):
        raise BundleError("run_json_invalid", "$.card")


def list_run_files(run_dir: Path) -> list[str]:
    """Return the relative paths of all regular files under `run_dir`, rejecting links and special files."""
    paths: list[str] = []
    seen: dict[str, str] = {}
    for folder, folder_names, file_names in os.walk(run_dir, followlinks=False):
        if Path(folder) == run_dir:
            folder_names[:] = [name for name in folder_names if name not in UNPACKED_FOLDERS]
            file_names = [name for name in file_names if name not in UNPACKED_FILES]
        for name in folder_names + file_names:
            _check_run_entry(Path(folder) / name, name in file_names)
        for name in file_names:
            relative = (Path(folder) / name).relative_to(run_dir).as_posix()
            _check_run_path(relative, seen)
            paths.append(relative)
    return sorted(paths)


def _check_run_entry(path: Path, expect_file: bool) -> None:
    mode = path.lstat().st_mode
    regular = stat.S_ISREG(mode) if expect_file else stat.S_ISDIR(mode)
    if not regular:
        raise BundleError("run_file_link", str(path))


def _check_run_path(relative: str, seen: dict[str, str]) -> None:
    if relative in RESERVED_NAMES:
        raise BundleError("run_file_reserved", relative)
    check_member_path(relative)
    key = path_key(relative)
    if key in seen:
        raise BundleError("path_duplicate", f"{seen[key]!r} / {relative!r}")
    seen[key] = relative


def _read_run_file(path: Path) -> bytes:
    """Return the bytes of a file in the run folder, or raise `run_file_unreadable` naming the file and errno."""
    try:
        return path.read_bytes()
    except OSError as error:  # such as EACCES, or EISDIR for a folder named run.json
        raise BundleError("run_file_unreadable", str(path), **os_error_details(error)) from None


def _add_run_file(writer: ArchiveWriter, run_dir: Path, relative: str) -> dict:
    """Add one file, streaming it; JSON records are read whole because they are parsed first."""
    path = run_dir / relative
    if relative.endswith((".json", ".jsonl")):
        data = _read_run_file(path)
        check_json_member(relative, data)
        writer.add(relative, data)
        return {"path": relative, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        stream = open(path, "rb")
    except OSError as error:
        raise BundleError("run_file_unreadable", str(path), **os_error_details(error)) from None
    with stream:
        size = os.fstat(stream.fileno()).st_size
        hashing = _HashingReader(stream, path)
        writer.add_stream(relative, size, hashing)
    return {"path": relative, "size": size, "sha256": hashing.digest.hexdigest()}


class _HashingReader:
    """Reader of the run file at `path` that hashes the bytes it passes through."""

    def __init__(self, stream, path: Path):
        self._stream = stream
        self._path = path
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except OSError as error:  # such as EIO; errors writing the bundle are not caught here
            raise BundleError("run_file_unreadable", str(self._path), **os_error_details(error)) from None
        self.digest.update(data)
        return data


def check_json_member(relative: str, data: bytes) -> None:
    """Reject invalid JSON and bare NaN or Infinity tokens in `.json` and `.jsonl` files."""
    if relative.endswith(".json"):
        _check_json_text(relative, data)
    elif relative.endswith(".jsonl"):
        for number, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                _check_json_text(relative, line, number)


def _check_json_text(relative: str, data: bytes, line: int | None = None) -> None:
    try:
        records.loads(data.decode("utf-8"))
    except ValueError as error:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise json_error(relative, error, line) from None


def json_error(path: str, error: ValueError, line: int | None = None) -> BundleError:
    """Build `json_invalid` or `json_non_finite` for `path`, naming the line and column where parsing failed.

    `line` is the line number within the file of a JSON Lines record that was parsed alone.
    A bare NaN or Infinity token has no position in Python's json module, so it gets only `line`.
    """
    if isinstance(error, records.NonFiniteNumberError):
        details = {} if line is None else {"line": line}
        return BundleError("json_non_finite", path, **details)
    row, column, problem = records.json_error_position(error)
    if line is not None:
        row += line - 1
    return BundleError("json_invalid", path, line=row, column=column, problem=problem)


def build_manifest(run: dict, files: list[dict]) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "bundle_id": str(uuid.uuid4()),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "vendor": run.get("vendor"),
        "card": run.get("card"),
        "rule_pack": {"name": run["rule_pack"]["name"], "sha256": run["rule_pack"]["sha256"]},
        "agent_version": run.get("agent_version"),
        "ticket": run.get("ticket"),
        "run": {key: run.get(key) for key in ("run_id", "profile", "tracks", "level", "started_at", "finished_at")},
        "files": files,
    }


def encode_manifest(manifest: dict) -> bytes:
    return (json.dumps(manifest, ensure_ascii=False, allow_nan=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def build_statement(manifest: dict, manifest_bytes: bytes) -> dict:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": MANIFEST_NAME, "digest": {"sha256": hashlib.sha256(manifest_bytes).hexdigest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"bundle_id": manifest["bundle_id"], "rule_pack": manifest["rule_pack"]},
    }


def sign_manifest(manifest: dict, manifest_bytes: bytes, signer: PrivateKey) -> bytes:
    """Return the envelope.dsse.json bytes: a DSSE envelope over the statement, signed by `signer`."""
    payload = records.dumps(build_statement(manifest, manifest_bytes)).encode("utf-8")
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    envelope.sign(signer.signer)
    return encode_envelope(envelope.to_dict())


def encode_envelope(envelope: dict) -> bytes:
    return (json.dumps(envelope, ensure_ascii=True, indent=2, sort_keys=True) + "\n").encode("ascii")


# Verifying -----------------------------------------------------------------


def open_bundle(path: Path, keyring: Keyring, limits: Limits = Limits()) -> VerifiedBundle:
    """Read and verify a bundle; raise BundleError with the first problem found."""
    index = read_archive(Path(path), limits)
    manifest_bytes = _required_member(index, MANIFEST_NAME, "manifest_missing")
    envelope = _parse_envelope(_required_member(index, ENVELOPE_NAME, "envelope_missing"))
    key_id = _verify_signature(envelope, keyring)
    statement = _parse_statement(envelope.payload)
    _check_subject(statement, manifest_bytes)
    manifest = _parse_manifest(manifest_bytes)
    _check_predicate(statement, manifest)
    _check_key_window(keyring, key_id, manifest)
    members = _check_files(manifest, index)
    return VerifiedBundle(manifest, key_id, statement, Path(path), MappingProxyType(members))


def _required_member(index: ArchiveIndex, name: str, code: str) -> bytes:
    if name not in index.kept:
        raise BundleError(code)
    return index.kept[name]


def signing_time(manifest: dict) -> datetime:
    """Return the manifest's `created_at`, the time the vendor's key signed the bundle."""
    try:
        moment = datetime.fromisoformat(manifest["created_at"])
    except (TypeError, ValueError):
        raise BundleError("signing_time_invalid", manifest.get("created_at")) from None
    if moment.tzinfo is None:
        raise BundleError("signing_time_invalid", manifest["created_at"])
    return moment


def _check_key_window(keyring: Keyring, key_id: str, manifest: dict) -> None:
    """Refuse a bundle signed while its key was revoked or outside the key's validity window."""
    window = keyring.window(key_id)
    if window is None:
        return
    moment = signing_time(manifest)
    if window.revoked_at is not None and moment >= window.revoked_at:
        raise BundleError("signature_key_revoked", manifest["created_at"])
    if not window.contains(moment):
        raise BundleError("signature_key_outside_window", manifest["created_at"])


def _parse_envelope(raw: bytes) -> Envelope:
    try:
        data = records.loads(raw)
        envelope = Envelope.from_dict(copy.deepcopy(data))
    except (KeyError, TypeError, ValueError, AttributeError, FormatError) as error:
        raise BundleError("envelope_invalid", f"{type(error).__name__}: {error}") from None
    if encode_envelope(envelope.to_dict()) != raw:
        raise BundleError("envelope_not_canonical")
    if envelope.payload_type != PAYLOAD_TYPE:
        raise BundleError("payload_type_invalid", envelope.payload_type)
    return envelope


def _verify_signature(envelope: Envelope, keyring: Keyring) -> str:
    if not envelope.signatures:
        raise BundleError("envelope_invalid", "no signatures")
    known = [keyring.get(key_id) for key_id in envelope.signatures if key_id in keyring]
    if not known:
        raise BundleError("signature_key_unknown", ", ".join(envelope.signatures))
    try:
        accepted = envelope.verify([key.sslib_key for key in known], 1)
    except VerificationError:
        raise BundleError("signature_invalid", ", ".join(key.key_id for key in known)) from None
    return next(iter(accepted))


def _parse_statement(payload: bytes) -> dict:
    try:
        statement = records.loads(payload)
    except ValueError as error:
        raise BundleError("statement_invalid", str(error)) from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise BundleError("statement_invalid", f"_type is not {STATEMENT_TYPE}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise BundleError("statement_invalid", f"predicateType {statement.get('predicateType')!r}")
    subject = statement.get("subject")
    if not isinstance(subject, list) or len(subject) != 1 or not isinstance(subject[0], dict) or subject[0].get("name") != MANIFEST_NAME:
        raise BundleError("statement_invalid", "the subject must be manifest.json alone")
    if not isinstance(statement.get("predicate"), dict):
        raise BundleError("statement_invalid", "the predicate is not an object")
    return statement


def _check_subject(statement: dict, manifest_bytes: bytes) -> None:
    digest = statement["subject"][0].get("digest")
    signed = digest.get("sha256") if isinstance(digest, dict) else None
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if signed != actual:
        raise BundleError("subject_digest_mismatch", f"{signed or '-'} / {actual}")


def _parse_manifest(manifest_bytes: bytes) -> dict:
    try:
        manifest = records.loads(manifest_bytes)
    except ValueError as error:  # UnicodeDecodeError, json.JSONDecodeError and NonFiniteNumberError are ValueErrors
        raise _manifest_json_error(error) from None
    error = jsonschema.exceptions.best_match(_manifest_validator().iter_errors(manifest))
    if error is not None:
        raise _manifest_schema_error(error)
    _check_manifest_paths(manifest["files"])
    return manifest


def _manifest_json_error(error: ValueError) -> BundleError:
    """Build `manifest_invalid` for a manifest that is not strict JSON, with the position and problem, or the bare non-finite token."""
    if isinstance(error, records.NonFiniteNumberError):
        return BundleError("manifest_invalid", str(error), token=error.token)
    line, column, problem = records.json_error_position(error)
    return BundleError("manifest_invalid", str(error), line=line, column=column, problem=problem)


def _manifest_schema_error(error: jsonschema.ValidationError) -> BundleError:
    """Build `manifest_invalid` with the path, jsonschema's English sentence, and the language-neutral code and values of the problem."""
    where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
    code, values = schema_problem(error)
    schema_values = {f"schema_{name}": value for name, value in values.items()}
    return BundleError("manifest_invalid", where, problem=error.message, keyword=str(error.validator), schema_code=code, **schema_values)


def _check_manifest_paths(entries: list[dict]) -> None:
    """Reject a path in `files` that the bundler would not write, naming its entry, the path error's code and the path."""
    seen: dict[str, str] = {}
    for index, entry in enumerate(entries):
        try:
            _check_run_path(entry["path"], seen)
        except BundleError as error:
            raise BundleError("manifest_invalid", f"files/{index}/path", problem=error.message, path_code=error.code,
                              path=error.value) from None


_VALIDATOR: list[jsonschema.protocols.Validator] = []


def _manifest_validator() -> jsonschema.protocols.Validator:
    if not _VALIDATOR:
        schema = json.loads(MANIFEST_SCHEMA_PATH.read_text(encoding="utf-8"))
        _VALIDATOR.append(jsonschema.Draft202012Validator(schema))
    return _VALIDATOR[0]


def _check_predicate(statement: dict, manifest: dict) -> None:
    predicate = statement["predicate"]
    if predicate.get("bundle_id") != manifest["bundle_id"] or predicate.get("rule_pack") != manifest["rule_pack"]:
        raise BundleError("statement_invalid", "the predicate's bundle id or rule pack differs from manifest.json")


def _check_files(manifest: dict, index: ArchiveIndex) -> dict[str, Member]:
    listed = {entry["path"]: entry for entry in manifest["files"]}
    members = {name: member for name, member in index.members.items() if name not in RESERVED_NAMES}
    unlisted = sorted(set(members) - set(listed))
    if unlisted:
        raise BundleError("member_not_in_manifest", unlisted[0])
    for folder in sorted(index.folders):
        if not any(path.startswith(folder + "/") for path in listed):
            raise BundleError("member_not_in_manifest", folder + "/")
    for path, entry in listed.items():
        _check_file(path, entry, members.get(path))
    return members


def _check_file(path: str, entry: dict, member: Member | None) -> None:
    if member is None:
        raise BundleError("member_missing", path)
    if member.size != entry["size"]:
        raise BundleError("file_size_mismatch", f"{path}: {member.size} B (manifest.json: {entry['size']} B)")
    if member.sha256 != entry["sha256"]:
        raise BundleError("file_digest_mismatch", f"{path}: {member.sha256} (manifest.json: {entry['sha256']})")
