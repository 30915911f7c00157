"""Validate rule pack files with the check that `python -m agent validate-pack` runs."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from certification.rulepack import RULEPACK_DIR, RulePackError, validate_rule_pack_file


class Command(BaseCommand):
    help = "Validate rule pack YAML files (default: every shipped pack); print each problem with its path."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="rule pack file named <id>-<version>.yaml")

    def handle(self, *args, **options):
        files = options["files"] or sorted(RULEPACK_DIR.glob("*.yaml"))
        problems = 0
        for path in files:
            try:
                issues = validate_rule_pack_file(path)
            except RulePackError as error:
                raise CommandError(f"{error} [{error.code}]; {error.hint}") from None
            for issue in issues:
                self.stderr.write(f"{path}: {issue}")
            problems += len(issues)
            if not issues:
                self.stdout.write(f"{path}: valid rule pack {path.stem}")
        if problems:
            raise CommandError(f"{problems} problem(s) in {len(files)} rule pack file(s) [rule_pack_invalid]; fix each path listed above")
