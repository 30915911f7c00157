"""`python -m agent validate-pack`: check a rule pack file against the schema and its own references."""

from __future__ import annotations

from pathlib import Path

import yaml

from agent.errors import EXIT_OK, EXIT_REJECTED, AgentError
from certification.rulepack import RulePackIssue, validate_rule_pack

HELP = "Validate a rule pack YAML file; print every problem with its path and exit 3 when there is one."


def add_arguments(parser):
    parser.add_argument("file", type=Path, metavar="FILE", help="rule pack YAML file, named <id>-<version>.yaml")


def run(args) -> int:
    try:
        raw = args.file.read_bytes()
    except OSError as error:
        raise AgentError("rule_pack_unreadable", f"cannot read {args.file}: {error.strerror}", "check the path") from None
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise AgentError("rule_pack_invalid", f"{args.file} is not valid UTF-8 YAML: {error}", "fix the YAML syntax", EXIT_REJECTED) from None
    issues = validate_rule_pack(data) + _file_name_issues(args.file, data)
    for issue in issues:
        print(f"{args.file}: {issue}")
    if issues:
        raise AgentError("rule_pack_invalid", f"{len(issues)} problem(s) in {args.file}", "fix each path listed above", EXIT_REJECTED)
    print(f"{args.file}: valid rule pack {data['id']}-{data['version']}")
    return EXIT_OK


def _file_name_issues(path: Path, data: object) -> list[RulePackIssue]:
    if not isinstance(data, dict) or "id" not in data or "version" not in data:
        return []
    expected = f"{data['id']}-{data['version']}.yaml"
    if path.name != expected:
        return [RulePackIssue("(file name)", f"the file must be named {expected}, after its id and version")]
    return []
