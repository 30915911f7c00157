"""`python -m agent validate-pack`: check a rule pack file against the schema and its own references."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from agent.errors import EXIT_OK, EXIT_REJECTED, AgentError, from_coded_error, translate_core_message
from agent.i18n import LANGUAGES, N_, _, ngettext
from certification.kind_hyperparameters import value_rule
from certification.rulepack import RulePackError, RulePackIssue, validate_rule_pack_file

# The YAML types that a `top_level_not_mapping` problem names (certification.rulepack.TOP_LEVEL_KINDS).
YAML_KINDS = (N_("string"), N_("list"), N_("number"), N_("boolean"))

# The labels that certification.rulepack puts in place of a YAML path when a problem concerns no single key.
PATH_LABELS = {"(top level)": N_("(top level)"), "(file)": N_("(file)"), "(file name)": N_("(file name)")}

# certification.hyperparameters.EXPECTED_TEXTS, marked for translation: the same English strings.
EXPECTED_TEXTS = {
    "boolean": N_("true or false"),
    "one_of": N_("one of {choices}"),
    "sharding": N_("empty, or stage1, stage2, stage3 or offload, several separated by spaces"),
    "integer_at_least": N_("an integer of at least {minimum}"),
    "integer_range": N_("an integer from {minimum} to {maximum}"),
    "number_above": N_("a number above {above}"),
    "number_at_least": N_("a number of at least {minimum}"),
    "number_at_least_below": N_("a number of at least {minimum} and below {below}"),
    "only": N_("exactly {only}"),
}


def add_arguments(parser):
    parser.add_argument("file", type=Path, metavar="FILE", help=_("rule pack YAML file, named <id>-<version>.yaml"))
    # cli.main reads --lang from anywhere on the command line before it parses, so this option only has to be accepted here.
    parser.add_argument("--lang", choices=LANGUAGES, help=_("language of the problems: zh or en (default: Chinese when LC_ALL, LC_MESSAGES or LANG starts with zh_, else English)"))


def run(args) -> int:
    check_rule_pack_file(args.file, print)
    print(_("{path}: valid rule pack {name}").format(path=args.file, name=args.file.stem))
    return EXIT_OK


def check_rule_pack_file(path: Path, report: Callable[[str], None]) -> None:
    """Validate the rule pack file at `path`, pass each problem to `report` as one line, and raise AgentError if there is one.

    `python -m agent validate-pack` prints the lines, and `python -m agent run` logs them before it starts.
    """
    try:
        issues = validate_rule_pack_file(path)
    except RulePackError as error:
        raise from_coded_error(error) from None
    for issue in issues:
        report(f"{path}: {issue_path(issue)}: {issue_message(issue)}")
    if issues:
        raise AgentError("rule_pack_invalid", ngettext("{count} problem in {path}", "{count} problems in {path}", len(issues)).format(count=len(issues), path=path),
                         _("fix each path listed above"), EXIT_REJECTED)


def issue_path(issue: RulePackIssue) -> str:
    """Return the problem's YAML path, with a label such as "(file)" translated into the user's language."""
    if issue.path in PATH_LABELS:
        return _(PATH_LABELS[issue.path])
    return issue.path


def issue_message(issue: RulePackIssue) -> str:
    """Return the problem's message in the user's language, translated from its code and values."""
    values = dict(issue.values)
    if "kind" in values:
        values["kind"] = _(values["kind"])
    return translate_core_message(issue.code, issue.message, hyperparameter_values(issue.code, values))


def hyperparameter_values(code: str, values: dict[str, str]) -> dict[str, str]:
    """Return the parts of a hyperparameter problem's message with the accepted values described in the user's language.

    certification.kind_hyperparameters.hyperparameter_problem names the workload's kind as `workload_kind`
    where the kind narrows the rule.
    """
    if code != "hyperparameter_invalid":
        return values
    texts = {name: _(text) for name, text in EXPECTED_TEXTS.items()}
    rule = value_rule(values.get("workload_kind", ""), values["key"])
    return {**values, "expected": rule.expected(texts)}
