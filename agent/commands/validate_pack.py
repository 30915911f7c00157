"""`python -m agent validate-pack`: check a rule pack file against the schema and its own references."""

from __future__ import annotations

from pathlib import Path

from agent.errors import EXIT_OK, EXIT_REJECTED, AgentError, from_coded_error, translate_core_message
from agent.i18n import N_, _, ngettext
from certification.rulepack import RulePackError, RulePackIssue, validate_rule_pack_file

# The YAML types that a `top_level_not_mapping` problem names (certification.rulepack.TOP_LEVEL_KINDS).
YAML_KINDS = (N_("string"), N_("list"), N_("number"), N_("boolean"))


def add_arguments(parser):
    parser.add_argument("file", type=Path, metavar="FILE", help=_("rule pack YAML file, named <id>-<version>.yaml"))


def run(args) -> int:
    try:
        issues = validate_rule_pack_file(args.file)
    except RulePackError as error:
        raise from_coded_error(error) from None
    for issue in issues:
        print(f"{args.file}: {issue.path}: {issue_message(issue)}")
    if issues:
        raise AgentError("rule_pack_invalid", ngettext("{count} problem in {path}", "{count} problems in {path}", len(issues)).format(count=len(issues), path=args.file),
                         _("fix each path listed above"), EXIT_REJECTED)
    print(_("{path}: valid rule pack {name}").format(path=args.file, name=args.file.stem))
    return EXIT_OK


def issue_message(issue: RulePackIssue) -> str:
    """Return the problem's message in the user's language; schema and cross-reference problems stay in English."""
    values = dict(issue.values)
    if "kind" in values:
        values["kind"] = _(values["kind"])
    return translate_core_message(issue.code, issue.message, values)
