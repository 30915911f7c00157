"""The agent's one diagnostic error type and its exit codes."""

from __future__ import annotations

import re
import string

from agent.i18n import N_
from agent.rulepack_problems import RULE_PACK_PROBLEMS
from agent.yaml_problems import localize_yaml_values
from certification.errors import BUNDLE_ERRORS, OS_ERROR_REASONS, BundleError, choose_template, os_error_details

# Exit codes of `python -m agent`. Scripts may rely on them.
EXIT_OK = 0
EXIT_FAILED = 1  # a workload or an unexpected internal error failed
EXIT_USAGE = 2  # bad command line, unknown profile, missing file
EXIT_REJECTED = 3  # a bundle, key or rule pack did not pass verification
EXIT_VERDICT_FAILED = 4  # `check` ran and at least one criterion failed
EXIT_REMOTE = 5  # the portal could not be reached or answered with an error
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), 128 + 2 as shells report a process that SIGINT ended
EXIT_TERMINATED = 143  # SIGTERM, 128 + 15 as shells report a process that SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops like on Ctrl-C and records why."""


class AgentError(Exception):
    """An error to show a person: what failed, on which value, and what to do.

    `code` is a stable reference string (for example `profile_not_found`) that
    tests and support staff can search for; `hint` says what to do next.
    """

    def __init__(self, code: str, message: str, hint: str = "", exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        from agent.i18n import _

        text = f"error[{self.code}]: {self.message}"
        if self.hint:
            text += "\n  " + _("hint: {hint}").format(hint=self.hint)
        return text


def from_core_error(error, exit_code: int = EXIT_USAGE) -> AgentError:
    """Turn a table error of the certification core (BundleError, TicketError) into an AgentError in the user's language.

    The core keeps English sentences; the agent's catalogue has their translations
    (scripts/agent_messages.sh extracts them from certification/errors.py).
    """
    from agent.i18n import _, choose_language

    templates, hint = error.table[error.code]
    templates = (templates,) if isinstance(templates, str) else templates
    values = _with_os_reason({"value": error.value, **error.details})
    schema_code, schema_values = _schema_problem(values)
    path_error = _path_error(values)
    if schema_code and values["value"] == "(top level)":
        values["value"] = _("(top level)")
    if "problem" in values and choose_language() != "en":
        problem = _localized_problem(values.pop("problem"), schema_code, schema_values, path_error)
        if problem is not None:
            values["problem"] = problem
    template = choose_template(tuple(_(template) for template in templates), set(values))
    message = template.format(**values)
    if choose_language() == "zh":
        message = close_up_full_width_brackets(message)
    return AgentError(error.code, message, _(hint), exit_code)


def close_up_full_width_brackets(text: str) -> str:
    """Remove the spaces around full-width brackets, which Chinese text sets without them.

    A Chinese template puts spaces around a placeholder for a Latin value, such as a path. A value in
    full-width brackets, such as （顶层）, takes no spaces.
    """
    return re.sub(r" *([（）]) *", r"\1", text)


def _localized_problem(problem: str, schema_code: str | None, schema_values: dict[str, str],
                       path_error: BundleError | None = None) -> str | None:
    """Return the English `problem` of a core error in the user's language, or None when the catalogue has no sentence for it.

    A JSON Schema problem is translated from its code and values, as validate-pack translates a rule pack's, and a
    manifest's path problem from the path error it carries. Another problem outside JSON_PROBLEMS and TAR_PROBLEMS
    (such as a json message that quotes the invalid character) gets None, so that the caller's position-only
    template is used instead of mixing in an English sentence.
    """
    from agent.i18n import _

    if path_error is not None:
        return from_core_error(path_error).message
    if schema_code:
        translated = translate_core_message(schema_code, problem, schema_values)
        return translated if translated != problem else None
    return _(problem) if problem in JSON_PROBLEMS + TAR_PROBLEMS else None


def _path_error(values: dict) -> BundleError | None:
    """Remove the path_code and path details of a manifest's path problem from `values`; return the path error they name."""
    if values.get("path_code") not in BUNDLE_ERRORS:
        return None
    return BundleError(values.pop("path_code"), values.pop("path", None))


def _schema_problem(values: dict) -> tuple[str | None, dict[str, str]]:
    """Remove the schema_code and schema_* details of a JSON Schema error from `values`; return the code and the values by their own names."""
    code = values.pop("schema_code", None)
    prefixed = [name for name in values if name.startswith("schema_")]
    return code, {name.removeprefix("schema_"): str(values.pop(name)) for name in prefixed}


# Messages of Python's json module (3.11) and of certification.bundle that `json_invalid` carries as {problem}.
JSON_PROBLEMS = (
    N_("Expecting value"),
    N_("Expecting property name enclosed in double quotes"),
    N_("Expecting ':' delimiter"),
    N_("Expecting ',' delimiter"),
    N_("Extra data"),
    N_("Unterminated string starting at"),
    N_("Invalid control character at"),
    N_("Invalid \\escape"),
    N_("Invalid \\uXXXX escape"),
    N_("not UTF-8 text"),
)

# Messages of Python's tarfile module (3.11) that `archive_invalid` carries as {problem}.
TAR_PROBLEMS = (
    N_("empty file"),
    N_("empty header"),
    N_("truncated header"),
    N_("bad checksum"),
    N_("invalid header"),
    N_("end of file header"),
    N_("unexpected end of data"),
    N_("overflow in number field"),
)


# Translations of the core's errors that carry their own English sentence (SigningError, RulePackError,
# VerdictInputError): code -> (message templates, hint template or None). Placeholders name entries of the
# error's `values`, and {detail} is the core's English sentence. The first template whose placeholders the
# error provides is used. A None hint template means the catalogue translates the core's hint text as it
# is, so CORE_HINTS lists those hints for scripts/agent_messages.sh.
CORE_MESSAGES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "key_file_exists": ((N_("key file {path} already exists"),), None),
    "key_file_unreadable": ((N_("cannot read key file {path}: {reason}"),), None),
    "key_invalid": ((N_("{path} is not an unencrypted PEM private key"),), None),
    "key_not_ed25519": ((N_("{path} contains a {type}, not an Ed25519 key"), N_("the public key is a {type}, not an Ed25519 key")), None),
    "public_key_invalid": ((N_("the text is not a PEM public key"),), None),
    "rule_pack_invalid": ((N_("invalid YAML at line {line}, column {column}: {problem}"),
                           N_("invalid YAML at line {line}, column {column}"),
                           N_("invalid YAML: {problem}"),
                           N_("not UTF-8 text: byte {byte} at offset {offset} is invalid"),
                           N_("the rule pack has no {keys} at its top level")), None),
    "rule_pack_not_found": ((N_("rule pack {name} not found in {folder}"),), N_("use one of: {known}")),
    "rule_pack_unreadable": ((N_("cannot read {path}: {reason}"),), None),
    "bundles_missing": ((N_("no vendor bundle to judge"),), None),
    "bundles_of_different_cards": ((N_("the bundles are not all of one card: {detail}"),), None),
    "carried_verdict_other_card": ((N_("an earlier verdict is of another card: {detail}"),), None),
    # Codes of RulePackIssue: problems with a rule pack file as a whole, which validate-pack lists.
    "file_not_utf8": ((N_("not UTF-8 text: byte {byte} at offset {offset} is invalid; save the file as UTF-8"),), None),
    "yaml_invalid": ((N_("invalid YAML at line {line}, column {column}: {problem}"), N_("invalid YAML at line {line}, column {column}"),
                      N_("invalid YAML: {problem}")), None),
    "file_empty": ((N_("the file is empty or only comments; a rule pack is a YAML mapping with the keys schema, id, version, status, tracks and others"),), None),
    "top_level_not_mapping": ((N_("the file parses as YAML, but its top level is a {kind}, not a mapping; "
                                  "a rule pack is a YAML mapping with the keys schema, id, version, status, tracks and others"),), None),
    "file_is_pem": ((N_("the file looks like a PEM key or certificate, not a rule pack; pass the rule pack's YAML file"),), None),
    "file_name_mismatch": ((N_("the file is named {file_name}, but its id and version make the pack {name}; "
                               "rename the file to {name}.yaml, or change id and version"),), None),
    "hyperparameter_invalid": ((N_("workload {workload}: {key} is {value}, but {workload_kind} workloads can only run with {expected}"),
                                N_("workload {workload}: {key} is {value}, but it must be {expected}")), None),
    "hyperparameter_unread": ((N_("workload {workload}: {workload_kind} workloads do not read {key}; remove it, or use one of {keys}, "
                                  "or a field of PaddleNLP's {trainer} that the agent does not set itself"),
                               N_("workload {workload}: {workload_kind} workloads do not read {key}; remove it, or use one of {keys}")), None),
    "hyperparameter_section": ((N_("workload {workload}: {key} is under {section}, but {workload_kind} workloads read it only from "
                                   "{expected_section}; move it to {expected_section}"),), None),
    "training_length_missing": ((N_("workload {workload}: {workload_kind} workloads need exactly one of {keys} under fixed, "
                                    "to set how long they train"),), None),
    "training_length_ambiguous": ((N_("workload {workload}: fixed sets {present}, but {workload_kind} workloads train for "
                                      "exactly one of them; keep one"),), None),
    "published_pack_changed": ((N_("published pack {name} is pinned at sha256 {pinned}, but these bytes hash to {sha256}; "
                                   "a published pack never changes, so publish the change as a new version"),), None),
    "published_pack_unpinned": ((N_("pack {name} is published but has no pin in {pins_file}; add its sha256 there when publishing"),), None),
    **RULE_PACK_PROBLEMS,
}
CORE_HINTS = (
    N_("choose another path or remove the old key first"),
    N_("check the path given to --key"),
    N_("check the path given to --public-key"),
    N_("create a key with `python -m agent keygen --out PATH`"),
    N_("use an Ed25519 key"),
    N_("pass the .pub file that `python -m agent keygen` wrote"),
    N_("save the rule pack as UTF-8"),
    N_("fix the YAML at that line and column"),
    N_("check the path"),
    N_("pass at least one verified bundle"),
    N_("judge together only bundles of one vendor's card model"),
    N_("carry only verdicts of the card being judged"),
)


def from_coded_error(error, exit_code: int = EXIT_USAGE) -> AgentError:
    """Turn a SigningError, RulePackError or VerdictInputError into an AgentError in the user's language.

    English keeps the core's own sentence. In Chinese, a code missing from CORE_MESSAGES, or an error
    without the values of any of its templates, also keeps the core's English sentence.
    """
    from agent.i18n import _, choose_language

    message, hint = str(error), error.hint
    if choose_language() == "en" or error.code not in CORE_MESSAGES:
        return AgentError(error.code, message, hint, exit_code)
    values = {**getattr(error, "values", {}), "detail": message}
    hint_template = CORE_MESSAGES[error.code][1]
    if hint_template and _placeholders(hint_template) <= values.keys():
        hint = _(hint_template).format(**values)
    elif hint:
        hint = _(hint)
    return AgentError(error.code, translate_core_message(error.code, message, values), hint, exit_code)


def translate_core_message(code: str, message: str, values: dict[str, str]) -> str:
    """Return the core's English `message` in the user's language.

    The first CORE_MESSAGES template of `code` whose placeholders `values` provides is used. In English,
    or when no template fits, the result is `message` itself.
    """
    from agent.i18n import _, choose_language

    if choose_language() == "en" or code not in CORE_MESSAGES:
        return message
    values = {**localize_yaml_values(_with_os_reason(values)), "detail": message}
    for template in CORE_MESSAGES[code][0]:
        if _placeholders(template) <= values.keys():
            return _(template).format(**values)
    return message


def os_error_reason(error: OSError) -> str:
    """Describe why a file operation failed, in the user's language, naming the errno value (such as ENOENT)."""
    details = os_error_details(error)
    return _localized_os_reason(details["errno"], details["reason"])


def _localized_os_reason(errno_name: str, english: str) -> str:
    """Return `english`, the core's reason for an OS error, in the user's language.

    A Chinese reason for an errno outside OS_ERROR_REASONS is the errno name alone, not the operating system's English text.
    """
    from agent.i18n import _, choose_language

    if choose_language() == "en":
        return english
    if errno_name in OS_ERROR_REASONS:
        return _(OS_ERROR_REASONS[errno_name]).format(errno=errno_name)
    return errno_name if errno_name != "-" else english


def _with_os_reason(values: dict) -> dict:
    """Return `values` with its {reason} of an OS error, which the core wrote in English, in the user's language."""
    if "errno" not in values or "reason" not in values:
        return values
    return {**values, "reason": _localized_os_reason(str(values["errno"]), str(values["reason"]))}


def _placeholders(template: str) -> set[str]:
    return {name for _literal, name, _spec, _conversion in string.Formatter().parse(template) if name}


class WorkloadNotSupported(Exception):
    """A workload that the device cannot run, such as a data type without kernels.

    The runner records it with status "not_supported", the English `message` and `details`, not as a crash.
    It logs `localized` after "not supported on this device:", so that text names what is not supported and
    why, in the user's language (the English `message` when none is given).
    """

    def __init__(self, message: str, details: dict | None = None, localized: str | None = None):
        super().__init__(message)
        self.details = details or {}
        self.localized = localized or message
