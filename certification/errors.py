"""Error tables of the certification core: one stable code per refusal.

Each table maps a code to an English sentence about the value and a hint that
says what to do. Tests assert the code; people read the sentence and the hint.
"""

from __future__ import annotations

from typing import Any

BUNDLE_ERRORS: dict[str, tuple[str, str]] = {
    # Packing a run folder.
    "run_dir_missing": ("run folder not found: {value}", "pass the folder that `python -m agent run` wrote"),
    "run_json_missing": ("run.json not found in {value}", "pack a complete run folder; run.json is written when the run starts"),
    "run_json_invalid": ("run.json is invalid: {value}", "rerun `python -m agent run`; run.json must name the rule pack, run id and start time"),
    "run_file_link": ("the run folder contains a link or special file: {value}", "replace it with a regular file or remove it"),
    "run_file_reserved": ("the run folder contains a file with a reserved bundle name: {value}", "remove it; manifest.json and envelope.dsse.json are written by the bundler"),
    "json_invalid": ("invalid JSON in {value}", "fix or rerun the workload that wrote this file"),
    "json_non_finite": ("bare NaN or Infinity token in {value}", "write non-finite numbers as the strings \"NaN\", \"Infinity\" or \"-Infinity\""),
    # Reading the archive.
    "archive_unreadable": ("cannot read bundle file {value}", "check the path and that it is a regular file"),
    "archive_invalid": ("the bundle is not a valid uncompressed tar archive: {value}", "pack the run again with `python -m agent bundle`"),
    "archive_not_canonical": ("the archive bytes differ from what the bundler writes, at offset {value}", "the file was changed after packing; pack the run again"),
    "archive_too_large": ("the archive exceeds the size limit: {value} bytes read", "bundles hold logs and evaluation records only; remove large files from the run folder"),
    "member_count_exceeded": ("the archive has more members than the limit: {value}", "bundles hold one folder per workload with a few records each"),
    "member_too_large": ("archive member exceeds the per-file size limit: {value}", "remove large files such as checkpoints from the run folder"),
    "member_link": ("archive member is a link: {value}", "bundles contain regular files only"),
    "member_special": ("archive member is a device, FIFO or other special file: {value}", "bundles contain regular files only"),
    "member_type_unsupported": ("archive member has an unsupported type: {value}", "bundles contain regular files and folders only"),
    "member_truncated": ("archive member is shorter than its header says: {value}", "the file was cut off; copy or download it again"),
    "path_absolute": ("archive member has an absolute path: {value}", "member paths are relative to the run folder"),
    "path_parent": ("archive member path contains '..': {value}", "member paths must stay inside the run folder"),
    "path_backslash": ("archive member path contains a backslash: {value}", "use '/' as the path separator"),
    "path_invalid": ("archive member path is invalid: {value}", "use non-empty relative paths without '.' parts or control characters"),
    "path_duplicate": ("two archive members have the same path after case folding and Unicode NFC: {value}", "rename one of the files in the run folder"),
    "manifest_missing": ("the bundle has no manifest.json", "pack the run with `python -m agent bundle`"),
    "manifest_invalid": ("manifest.json is invalid: {value}", "pack the run again with this agent version"),
    "envelope_missing": ("the bundle has no envelope.dsse.json", "pack the run with `python -m agent bundle`"),
    "envelope_invalid": ("envelope.dsse.json is not a valid DSSE envelope: {value}", "pack the run again"),
    "envelope_not_canonical": ("envelope.dsse.json is not in the form the bundler writes", "the envelope was edited after signing; pack the run again"),
    "payload_type_invalid": ("unexpected DSSE payload type: {value}", "the payload type must be application/vnd.in-toto+json"),
    "signature_key_unknown": ("the bundle is signed by an unknown key id: {value}", "register the vendor's public key, or pass its .pub file with --public-key"),
    "signature_invalid": ("the signature does not verify with key {value}", "the bundle was changed after signing or signed with another key; pack it again"),
    "statement_invalid": ("the in-toto statement is invalid: {value}", "pack the run again with this agent version"),
    "subject_digest_mismatch": ("manifest.json does not match the signed digest: {value}", "manifest.json was changed after signing; pack the run again"),
    "member_not_in_manifest": ("archive member is not listed in manifest.json: {value}", "the archive was changed after packing; pack the run again"),
    "member_missing": ("manifest.json lists a file that the archive does not contain: {value}", "the archive was changed after packing; pack the run again"),
    "file_size_mismatch": ("file size differs from manifest.json: {value}", "the file was changed after packing; pack the run again"),
    "file_digest_mismatch": ("file sha256 differs from manifest.json: {value}", "the file was changed after packing; pack the run again"),
    "file_not_in_bundle": ("the bundle has no file {value}", "check the workload id and file name"),
}


class BundleError(Exception):
    """A bundle that cannot be packed, read or trusted: a stable `code`, the `value` and a `hint`."""

    def __init__(self, code: str, value: Any = None):
        template, hint = BUNDLE_ERRORS[code]
        self.code = code
        self.value = value
        self.message = template.format(value=value)
        self.hint = hint
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
