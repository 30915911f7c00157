"""`python -m agent validate-pack`: check a rule pack file against the schema and its own references."""

from __future__ import annotations

from pathlib import Path

from agent.errors import EXIT_OK, EXIT_REJECTED, AgentError, from_coded_error
from agent.i18n import _
from certification.rulepack import RulePackError, validate_rule_pack_file


def add_arguments(parser):
    parser.add_argument("file", type=Path, metavar="FILE", help="rule pack YAML file, named <id>-<version>.yaml")


def run(args) -> int:
    try:
        issues = validate_rule_pack_file(args.file)
    except RulePackError as error:
        raise from_coded_error(error) from None
    for issue in issues:
        print(f"{args.file}: {issue}")
    if issues:
        raise AgentError("rule_pack_invalid", _("{count} problem(s) in {path}").format(count=len(issues), path=args.file),
                         _("fix each path listed above"), EXIT_REJECTED)
    print(_("{path}: valid rule pack {name}").format(path=args.file, name=args.file.stem))
    return EXIT_OK
