"""Portal messages for the codes a bundle can be rejected with during validation.

`certification.errors` keeps English sentences with hints for the agent's
command line. A vendor reading the portal needs the same facts in their
language and without command-line options that do not apply there, so every
code of BUNDLE_ERRORS and TICKET_ERRORS, and the pipeline's own codes, has a
translatable sentence here. `%(value)s` is the offending value that the
certification core recorded with the error, and other placeholders name its
details (`%(line)s` and `%(column)s` of a JSON error).

A code whose errors carry different details has a tuple of sentences: the first
one whose placeholders the stored parameters provide is used, so a report
stored before a detail was recorded falls back to the last, value-only one.
A parameter `value_zh` replaces `value` on Chinese pages.
"""

import re

from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

PACK_AGAIN = _("Pack the run folder again with 'python -m agent bundle' and upload the new file.")

REJECTION_MESSAGES = {
    # Packing a run folder; the agent reports these before anything is uploaded.
    "run_dir_missing": _("The run folder %(value)s was not found. Pack the folder that 'python -m agent run' wrote."),
    "run_json_missing": _("The run folder %(value)s has no run.json. Pack a complete run folder; run.json is written when the run starts."),
    "run_json_invalid": _("run.json is invalid: %(value)s is missing or has the wrong type. Run the workloads again with 'python -m agent run'."),
    "run_file_unreadable": (_("The run folder file %(value)s could not be read (%(errno)s). Make it readable, then pack again."),
                            _("The run folder file %(value)s could not be read. Make it readable, then pack again.")),
    "run_file_link": _("The run folder contains a link or special file: %(value)s. Replace it with a regular file or remove it, then pack again."),
    "run_file_reserved": _("The run folder contains a file with a name reserved for the bundle: %(value)s. Remove it and pack again."),
    "json_invalid": (
        _("The bundle contains invalid JSON in %(value)s at line %(line)s, column %(column)s. Run the workload that wrote this file again, then pack and upload."),
        _("The bundle contains invalid JSON in %(value)s. Run the workload that wrote this file again, then pack and upload."),
    ),
    "json_non_finite": _("The bundle contains a bare NaN or Infinity in %(value)s. Use this agent version, which writes them as strings, then pack and upload again."),
    # Reading the archive.
    "archive_unreadable": _("The stored bundle file %(value)s could not be read. Upload the bundle again; if this repeats, tell the certification staff."),
    "archive_invalid": (
        _("The uploaded file is not a valid uncompressed tar archive: reading failed at byte offset %(offset)s. "
          "Upload the .tar file that 'python -m agent bundle' wrote."),
        _("The uploaded file is not a valid uncompressed tar archive (%(value)s). Upload the .tar file that 'python -m agent bundle' wrote."),
    ),
    "archive_compressed": _("The uploaded file is a %(value)s file, not a plain tar archive. Upload the .tar file that 'python -m agent bundle' wrote, without compressing it."),
    "archive_not_canonical": _("The archive differs from what the agent writes, at byte offset %(value)s, so it was changed after packing. Pack the run folder again and upload the new file."),
    "archive_too_large": _("The archive is larger than the portal's limit (%(value)s bytes read). Remove large files such as checkpoints from the run folder, pack again and upload."),
    "member_count_exceeded": _("The archive has more files than the limit (%(value)s). Keep one folder per workload with its records only, pack again and upload."),
    "member_too_large": _("A file in the archive is larger than the per-file limit: %(value)s. Remove large files such as checkpoints from the run folder, pack again and upload."),
    "member_link": _("The archive contains a link: %(value)s. Bundles contain regular files only; pack the run folder again."),
    "member_special": _("The archive contains a device, FIFO or other special file: %(value)s. Bundles contain regular files only; pack the run folder again."),
    "member_type_unsupported": _("The archive contains an entry of an unsupported type: %(value)s. Pack the run folder again with the agent."),
    "member_truncated": _("A file in the archive is shorter than its header says (bytes received / bytes in the header): %(value)s. The upload was cut off or the file damaged; upload the bundle again."),
    "member_nested_archive": _("The archive contains another archive or compressed file: %(value)s. Leave such files out of the run folder, pack again and upload."),
    "folder_has_content": _("A folder entry of the archive carries data: %(value)s. The archive was not written by the agent; pack the run folder again."),
    "path_not_utf8": _("A file name in the archive is not valid UTF-8: %(value)s. Rename the file in the run folder, pack again and upload."),
    "path_absolute": _("A file in the archive has an absolute path: %(value)s. Pack the run folder with the agent, which writes relative paths."),
    "path_parent": _("A file path in the archive contains '..': %(value)s. Pack the run folder with the agent, which keeps every path inside it."),
    "path_backslash": _("A file path in the archive contains a backslash: %(value)s. Pack the run folder with the agent, which writes '/' as separator."),
    "path_invalid": _("A file path in the archive is invalid: %(value)s. Rename the file in the run folder, pack again and upload."),
    "path_duplicate": _("Two files in the archive have the same path when case and Unicode form are ignored: %(value)s. Rename one of them in the run folder, pack again and upload."),
    "manifest_missing": _("The bundle has no manifest.json. %(pack_again)s"),
    # %(value)s of a schema error is the path of the invalid part, such as files/0/size. An invalid file path has
    # its entry as %(value)s (files/3/path) and the path itself as %(path)s.
    "manifest_invalid": (_("The bundle's manifest.json is not valid JSON at line %(line)s, column %(column)s. %(pack_again)s"),
                         _("The bundle's manifest.json contains a bare %(token)s token, which JSON does not allow. %(pack_again)s"),
                         _("The bundle's manifest.json lists an invalid file path at %(value)s: %(path)s. %(pack_again)s"),
                         _("The bundle's manifest.json is invalid at %(value)s: it does not meet the schema keyword %(keyword)s. %(pack_again)s"),
                         _("The bundle's manifest.json is invalid: %(value)s. %(pack_again)s")),
    "envelope_missing": _("The bundle has no signature envelope (envelope.dsse.json). %(pack_again)s"),
    "envelope_invalid": _("The bundle's signature envelope is invalid: %(value)s. %(pack_again)s"),
    "envelope_not_canonical": _("The bundle's signature envelope was edited after signing. %(pack_again)s"),
    "payload_type_invalid": _("The signature envelope has the payload type %(value)s, not an in-toto statement. %(pack_again)s"),
    # Signature and signing key.
    "signature_key_unknown": _("The bundle is signed with the key %(value)s, which is not a signing key of your vendor. Add the key's .pub file on the Signing keys page, then upload again."),
    "signature_key_revoked": _("The bundle was signed at %(value)s, after its signing key was revoked. Sign with a current key registered on the Signing keys page, pack again and upload."),
    "signature_key_outside_window": _("The bundle was signed at %(value)s, outside the validity window of its signing key. Register a current key on the Signing keys page, pack the run again with it and upload."),
    "signing_time_invalid": _("The manifest's signing time is not an ISO 8601 time with a time zone: %(value)s. %(pack_again)s"),
    "signature_invalid": _("The signature does not verify with the key %(value)s: the bundle was changed after signing or signed with another key. %(pack_again)s"),
    "statement_invalid": _("The signed in-toto statement is invalid: %(value)s. %(pack_again)s"),
    "subject_digest_mismatch": _("manifest.json does not match the signed digest (signed sha256 / actual sha256: %(value)s); it was changed after signing. %(pack_again)s"),
    # Files listed in the manifest.
    "member_not_in_manifest": _("The archive contains a file that manifest.json does not list: %(value)s. The archive was changed after packing. %(pack_again)s"),
    "member_missing": _("manifest.json lists a file that the archive does not contain: %(value)s. The archive was changed after packing. %(pack_again)s"),
    "file_size_mismatch": _("A file's size differs from manifest.json: %(value)s. The file was changed after packing. %(pack_again)s"),
    "file_digest_mismatch": _("A file's sha256 differs from manifest.json: %(value)s. The file was changed after packing. %(pack_again)s"),
    "file_changed_after_verification": _("The stored bundle changed while it was being validated: %(value)s. Tell the certification staff; the stored file must not change."),
    "file_not_in_bundle": _("The bundle has no file %(value)s, which validation needs. Pack the complete run folder and upload again."),
    # Run tickets.
    "ticket_unreadable": _("The run ticket could not be read: %(value)s. Download the ticket again from the Run tickets page and run with it."),
    "ticket_invalid": (
        _("The run ticket in the bundle is not a valid signed ticket: its %(value)s has invalid JSON at line %(line)s, column %(column)s. "
          "Download the ticket again from the Run tickets page; do not edit it."),
        _("The run ticket in the bundle is not a DSSE envelope: %(envelope_field)s is missing or invalid. "
          "Download the ticket again from the Run tickets page; do not edit it."),
        _("The run ticket in the bundle has the payload type %(payload_type)s, not %(expected)s. "
          "Download the ticket again from the Run tickets page; do not edit it."),
        _("The run ticket in the bundle has no claim %(missing_claim)s. Download the ticket again from the Run tickets page; do not edit it."),
        _("The run ticket in the bundle has claims that its schema does not allow: %(unexpected_claim)s. "
          "Download the ticket again from the Run tickets page; do not edit it."),
        _("The run ticket's claim %(time_claim)s is not an ISO 8601 time with a time zone: %(value)s. "
          "Download the ticket again from the Run tickets page; do not edit it."),
        _("The run ticket's claim %(claim)s does not meet the schema keyword %(keyword)s: %(expected)s. "
          "Download the ticket again from the Run tickets page; do not edit it."),
        _("The run ticket in the bundle is not a valid signed ticket: %(value)s. Download the ticket again from the Run tickets page; do not edit it."),
    ),
    "ticket_signature_invalid": _("The run ticket's signature does not verify with this portal's key %(value)s. Request a new ticket on the Run tickets page and run the workloads with it."),
    "ticket_missing": _("The rule pack %(value)s requires a run ticket and the bundle has none. Request a ticket on the Run tickets page and run the workloads with it."),
    "ticket_expired": _("The run ticket expired at %(value)s. Request a new ticket on the Run tickets page and run the workloads again."),
    "ticket_not_yet_valid": (
        _("The bundle's %(time_claim)s is not an ISO 8601 time with a time zone: %(value)s. "
          "Pack the run folder again with 'python -m agent bundle' and upload the new file."),
        _("The bundle names a time before its run ticket was issued (bundle < ticket: %(value)s). Check the clock of the lab's machines and run the workloads again after the ticket is issued."),
    ),
    "ticket_vendor_mismatch": _("The run ticket belongs to another vendor (ticket / bundle: %(value)s). Use a ticket issued to your vendor."),
    "ticket_card_mismatch": _("The run ticket is for another card (ticket / bundle, model and serial: %(value)s). Run on the card that the ticket names, or request a ticket for this card."),
    "ticket_scope_mismatch": _("The run does not match its ticket (ticket / bundle: %(value)s). Run the profile whose rule pack, track and level the ticket names."),
    "ticket_reused": _("The run ticket %(value)s was already used by another submission. Request a new ticket for a new run."),
    "ticket_unknown": _("This portal has no record of the run ticket %(value)s. Request a ticket on this portal's Run tickets page."),
    # The pipeline's own codes.
    "records_invalid": _("The bundle's records are incomplete or invalid: %(value)s. Pack a complete run folder written by 'python -m agent run' and upload it."),
    "validation_timed_out": _("Validation took longer than the limit of %(value)s seconds and was stopped; the stored bundle is kept. Ask the certification staff to validate it again."),
}


class StoredParams(dict):
    """Parameters of a stored rejection; a report stored before its parameters were recorded shows '-' in their place."""

    def __missing__(self, key):
        return "-"


# A %(name)s placeholder of a sentence.
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# The path that certification.bundle gives a schema error at the root of a JSON file, such as an unexpected key of the manifest.
TOP_LEVEL_PATH = "(top level)"


def rejection_message(code: str, params: dict) -> str | None:
    """Return the portal's sentence for a rejection code in the active language, or None when the code has none."""
    messages = REJECTION_MESSAGES.get(code)
    if messages is None:
        return None
    params = dict(params)
    if "value_zh" in params and (get_language() or "").startswith("zh"):
        params["value"] = params["value_zh"]
    top_level = "keyword" in params and params.get("value") == TOP_LEVEL_PATH
    if top_level:
        params["value"] = str(_("(top level)"))
    message = choose_sentence(messages if isinstance(messages, tuple) else (messages,), set(params))
    text = message % StoredParams(params, pack_again=str(PACK_AGAIN))
    if top_level and (get_language() or "").startswith("zh"):
        # The Chinese sentence spaces a Latin path, but the label is in full-width brackets, which take no spaces.
        text = text.replace(f" {params['value']} ", params["value"])
    return text


def choose_sentence(sentences: tuple, names: set[str]) -> str:
    """Return the first of `sentences`, translated, whose placeholders other than pack_again are all in `names`, else the last."""
    for sentence in sentences:
        text = str(sentence)
        if set(PLACEHOLDER.findall(text)) - {"pack_again"} <= names:
            return text
    return str(sentences[-1])
