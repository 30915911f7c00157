"""Error tables of the certification core: one stable code per refusal.

Each table maps a code to an English sentence about the value and a hint that
says what to do. Tests assert the code; people read the sentence and the hint.
A code whose error may carry details besides the value (such as the line of a
JSON error) has a tuple of sentences: the first one whose placeholders the
error provides is used. Values and details are language-neutral (paths, numbers,
digests, key names), so that the agent and the portal can translate the sentence
around them.
"""

from __future__ import annotations

import errno
import string
from typing import Any

# English descriptions of the errno values that reading or writing a file commonly raises, by errno name.
# {errno} is that name, which each description keeps so that a person can search for it.
OS_ERROR_REASONS: dict[str, str] = {
    "ENOENT": "no such file or folder ({errno})",
    "EACCES": "permission denied ({errno})",
    "EPERM": "operation not permitted ({errno})",
    "EISDIR": "the path is a folder, not a file ({errno})",
    "ENOTDIR": "a part of the path is not a folder ({errno})",
    "ENOSPC": "no space left on the device ({errno})",
    "EROFS": "the file system is read-only ({errno})",
    "ELOOP": "too many levels of symbolic links ({errno})",
    "ENAMETOOLONG": "the file name is too long ({errno})",
    "EIO": "input/output error of the device ({errno})",
}


def os_error_details(error: OSError) -> dict[str, str]:
    """Return the errno name of `error` (such as ENOENT, or "-" when it has none) and an English reason that names it.

    An errno outside OS_ERROR_REASONS keeps the operating system's own text next to its name.
    """
    name = errno.errorcode.get(error.errno, "") if isinstance(error.errno, int) else ""
    if name in OS_ERROR_REASONS:
        return {"errno": name, "reason": OS_ERROR_REASONS[name].format(errno=name)}
    text = error.strerror or type(error).__name__
    return {"errno": name or "-", "reason": f"{text} ({name})" if name else text}

BUNDLE_ERRORS: dict[str, tuple[str | tuple[str, ...], str]] = {
    # Packing a run folder.
    "run_dir_missing": ("run folder not found: {value}", "pass the folder that `python -m agent run` wrote"),
    "run_json_missing": ("run.json not found in {value}", "pack a complete run folder; run.json is written when the run starts"),
    # {value} is the JSONPath of the missing or mistyped part: $ for the top level, $.run_id, $.rule_pack.name.
    "run_json_invalid": ("run.json is invalid: {value} is missing or has the wrong type", "rerun `python -m agent run`; run.json must name the rule pack, run id and start time"),
    # {reason} names the errno value, as os_error_details describes it, such as EACCES or EISDIR for a folder.
    "run_file_unreadable": ("cannot read the run folder file {value}: {reason}", "make the file readable for this user, then pack the run again"),
    "run_file_link": ("the run folder contains a link or special file: {value}", "replace it with a regular file or remove it"),
    "run_file_reserved": ("the run folder contains a file with a reserved bundle name: {value}", "remove it; manifest.json and envelope.dsse.json are written by the bundler"),
    # {problem} is Python's json error message, such as "Expecting value", or "not UTF-8 text". A translation
    # without a sentence for the problem uses the second template, which names only the position.
    "json_invalid": (("invalid JSON in {value} at line {line}, column {column}: {problem}", "invalid JSON in {value} at line {line}, column {column}"),
                     "fix or rerun the workload that wrote this file"),
    "json_non_finite": (("bare NaN or Infinity token in {value} at line {line}", "bare NaN or Infinity token in {value}"),
                        "write non-finite numbers as the strings \"NaN\", \"Infinity\" or \"-Infinity\""),
    # Reading the archive.
    # {reason} names the errno value, as os_error_details describes it. A path that is not a regular file has no reason.
    "archive_unreadable": (("cannot read bundle file {value}: {reason}", "cannot read bundle file {value}"), "check the path and that it is a regular file"),
    # {value} and {problem} are tarfile's English text, such as "truncated header". {offset} is where the failed header starts.
    "archive_invalid": (("the bundle is not a valid uncompressed tar archive: {problem} at byte offset {offset}",
                         "the bundle is not a valid uncompressed tar archive: reading failed at byte offset {offset}",
                         "the bundle is not a valid uncompressed tar archive: {value}"), "pack the run again with `python -m agent bundle`"),
    "archive_compressed": ("the bundle is a {value} file, not a plain tar archive", "upload the .tar file that `python -m agent bundle` wrote, without compressing it"),
    "archive_not_canonical": ("the archive bytes differ from what the bundler writes, at offset {value}", "the file was changed after packing; pack the run again"),
    "archive_too_large": ("the archive exceeds the size limit: {value} bytes read", "bundles hold logs and evaluation records only; remove large files from the run folder"),
    "member_count_exceeded": ("the archive has more members than the limit: {value}", "bundles hold one folder per workload with a few records each"),
    "member_too_large": ("archive member exceeds the per-file size limit: {value}", "remove large files such as checkpoints from the run folder"),
    "member_link": ("archive member is a link: {value}", "bundles contain regular files only"),
    "member_special": ("archive member is a device, FIFO or other special file: {value}", "bundles contain regular files only"),
    "member_type_unsupported": ("archive member has an unsupported type: {value}", "bundles contain regular files and folders only"),
    "member_truncated": ("archive member is shorter than its header says (bytes read / bytes in the header): {value}", "the file was cut off; copy or download it again"),
    "member_nested_archive": ("archive member is itself an archive or compressed file: {value}", "bundles hold plain records; nothing inside is expanded, so leave such files out of the run folder"),
    "folder_has_content": ("a folder entry of the archive carries data: {value}", "the archive was not written by the bundler; pack the run again"),
    "path_not_utf8": ("archive member name is not valid UTF-8: {value}", "rename the file in the run folder with a UTF-8 name and pack it again"),
    "path_absolute": ("archive member has an absolute path: {value}", "member paths are relative to the run folder"),
    "path_parent": ("archive member path contains '..': {value}", "member paths must stay inside the run folder"),
    "path_backslash": ("archive member path contains a backslash: {value}", "use '/' as the path separator"),
    "path_invalid": ("archive member path is invalid: {value}", "use non-empty relative paths without '.' parts or control characters"),
    "path_duplicate": ("two archive members have the same path after case folding and Unicode NFC: {value}", "rename one of the files in the run folder"),
    "manifest_missing": ("the bundle has no manifest.json", "pack the run with `python -m agent bundle`"),
    # Text that is not strict JSON has the {line}, {column} and {problem} of json_invalid, or the bare non-finite
    # {token}. A schema error's {value} is the path of the invalid part (such as files/0/size), {problem} is jsonschema's
    # English sentence and {keyword} the schema keyword it breaks. Its schema_code and schema_* details are the code
    # and values that certification.rulepack_schema gives the error, so that a translation can replace {problem}.
    # A path in `files` that the bundler would not write has the value files/<index>/path, and {problem} is the
    # sentence of the path error whose code and value are the details path_code and path.
    "manifest_invalid": (("manifest.json is not valid JSON at line {line}, column {column}: {problem}",
                          "manifest.json is not valid JSON at line {line}, column {column}",
                          "manifest.json contains a bare {token} token, which JSON does not allow",
                          "manifest.json is invalid at {value}: {problem}",
                          "manifest.json is invalid at {value}: it does not meet the schema keyword {keyword}",
                          "manifest.json is invalid: {value}"), "pack the run again with this agent version"),
    "envelope_missing": ("the bundle has no envelope.dsse.json", "pack the run with `python -m agent bundle`"),
    "envelope_invalid": ("envelope.dsse.json is not a valid DSSE envelope: {value}", "pack the run again"),
    "envelope_not_canonical": ("envelope.dsse.json is not in the form the bundler writes", "the envelope was edited after signing; pack the run again"),
    "payload_type_invalid": ("unexpected DSSE payload type: {value}", "the payload type must be application/vnd.in-toto+json"),
    "signature_key_unknown": ("the bundle is signed by an unknown key id: {value}", "register the vendor's public key, or pass its .pub file with --public-key"),
    "signature_key_revoked": ("the bundle was signed at {value}, after its key was revoked", "sign with a current key registered at the portal and pack the run again"),
    "signature_key_outside_window": ("the bundle was signed at {value}, outside its key's validity window", "sign with the key that was valid when the bundle was packed, or register a current key"),
    "signing_time_invalid": ("the manifest's created_at is not an ISO 8601 time with a time zone: {value}", "pack the run again with this agent version"),
    "signature_invalid": ("the signature does not verify with key {value}", "the bundle was changed after signing or signed with another key; pack it again"),
    "statement_invalid": ("the in-toto statement is invalid: {value}", "pack the run again with this agent version"),
    "subject_digest_mismatch": ("manifest.json does not match the signed digest (signed sha256 / actual sha256): {value}", "manifest.json was changed after signing; pack the run again"),
    "member_not_in_manifest": ("archive member is not listed in manifest.json: {value}", "the archive was changed after packing; pack the run again"),
    "member_missing": ("manifest.json lists a file that the archive does not contain: {value}", "the archive was changed after packing; pack the run again"),
    "file_size_mismatch": ("file size differs from manifest.json: {value}", "the file was changed after packing; pack the run again"),
    "file_digest_mismatch": ("file sha256 differs from manifest.json: {value}", "the file was changed after packing; pack the run again"),
    "file_changed_after_verification": ("the bundle file changed after it was verified: {value}", "do not modify a bundle while it is being read; verify it again"),
    "file_not_in_bundle": ("the bundle has no file {value}", "check the workload id and file name"),
}

TICKET_ERRORS: dict[str, tuple[str | tuple[str, ...], str]] = {
    "ticket_unreadable": (("cannot read ticket file {value}: {reason}", "cannot read ticket file {value}"), "pass the ticket file downloaded from the portal's run ticket page"),
    # The details name what is wrong: the position of invalid JSON in the file or the base64-decoded payload, the
    # size limit, a DSSE envelope field, the payload type, or a claim (as a JSONPath) and the schema keyword it breaks.
    "ticket_invalid": (("the run ticket is not a valid signed ticket: invalid JSON in {value} at line {line}, column {column}: {problem}",
                        "the run ticket is not a valid signed ticket: invalid JSON in {value} at line {line}, column {column}",
                        "the run ticket is not a valid signed ticket: {value} is larger than {limit} bytes",
                        "the run ticket is not a DSSE envelope: {envelope_field} is missing or invalid",
                        "the run ticket has the payload type {payload_type}, not {expected}",
                        "the run ticket has no claim {missing_claim}",
                        "the run ticket has claims that its schema does not allow: {unexpected_claim}",
                        "the run ticket's claim {time_claim} is not an ISO 8601 time with a time zone: {value}",
                        "the run ticket's claim {claim} does not meet the schema keyword {keyword}: {expected}",
                        "the run ticket is not a valid signed ticket: {value}"),
                       "download the ticket from the portal again; do not edit it"),
    "ticket_signature_invalid": ("the run ticket's signature does not verify with the portal key {value}", "the ticket was changed or not issued by this portal; request a new one"),
    "ticket_missing": ("the rule pack {value} requires a run ticket, and the bundle has none", "request a run ticket on the portal and run `python -m agent run --ticket FILE`"),
    "ticket_expired": ("the run ticket expired at {value}", "request a new run ticket and run the workloads again"),
    "ticket_not_yet_valid": (("the bundle's {time_claim} is not an ISO 8601 time with a time zone: {value}",
                              "the bundle claims a time before its run ticket was issued (bundle < ticket): {value}"),
                             "run the workloads after the ticket is issued; check the lab's clock"),
    "ticket_vendor_mismatch": ("the run ticket is for another vendor (ticket / bundle): {value}", "use a ticket issued to your vendor"),
    "ticket_card_mismatch": ("the run ticket is for another card (ticket / bundle, model and serial): {value}", "run on the card the ticket names, or request a ticket for this card"),
    "ticket_scope_mismatch": ("the run does not match its ticket's rule pack, track or level (ticket / bundle): {value}", "run the profile whose rule pack, track and level the ticket names"),
    "ticket_reused": ("the run ticket {value} was already used by another submission", "each ticket is accepted once; request a new ticket for a new run"),
    "ticket_unknown": ("the portal has no record of run ticket {value}", "request a ticket on this portal; tickets of other portals are not accepted"),
}


def choose_template(templates: str | tuple[str, ...], names: set[str]) -> str:
    """Return the first of `templates` whose placeholders are all in `names`, or the last one when none fits."""
    if isinstance(templates, str):
        return templates
    for template in templates:
        if placeholders(template) <= names:
            return template
    return templates[-1]


def placeholders(template: str) -> set[str]:
    """Return the names of the {placeholders} in `template`."""
    return {name for _literal, name, _spec, _conversion in string.Formatter().parse(template) if name}


class CertificationError(Exception):
    """An error with a stable `code`, the offending `value`, a sentence and a `hint`, from one table."""

    table: dict[str, tuple[str | tuple[str, ...], str]] = {}

    def __init__(self, code: str, value: Any = None, **details: Any):
        templates, hint = self.table[code]
        self.code = code
        self.value = value
        self.details = details
        self.message = choose_template(templates, {"value", *details}).format(value=value, **details)
        self.hint = hint
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BundleError(CertificationError):
    """A bundle that cannot be packed, read or trusted."""

    table = BUNDLE_ERRORS


class TicketError(CertificationError):
    """A run ticket that cannot be read, is not genuine, or does not fit the bundle that carries it."""

    table = TICKET_ERRORS
