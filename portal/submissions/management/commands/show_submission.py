"""Print a submission's state and its validation report, for staff at a terminal and for scripts."""

import json

from django.core.management.base import BaseCommand, CommandError

from portal.submissions.models import Submission


def submission_summary(submission: Submission) -> dict:
    report = getattr(submission, "report", None)
    return {
        "id": submission.pk,
        "state": submission.state,
        "vendor": submission.vendor.slug,
        "card": str(submission.card) if submission.card else None,
        "card_id": submission.card_id,
        "sha256": submission.sha256,
        "verdict": report.verdict if report else None,
        "error_code": report.error_code if report else "",
        "error_message": report.error_message if report else "",
    }


class Command(BaseCommand):
    help = "Print the state and validation report of one submission."

    def add_arguments(self, parser):
        parser.add_argument("submission", type=int, help="submission id, as `python -m agent upload` prints it")
        parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")

    def handle(self, *args, **options):
        submission = Submission.objects.select_related("vendor", "card", "report").filter(pk=options["submission"]).first()
        if submission is None:
            raise CommandError(f"submission {options['submission']} not found; list them on the staff queue page")
        summary = submission_summary(submission)
        if options["json"]:
            self.stdout.write(json.dumps(summary, ensure_ascii=False))
            return
        self.write_table(summary)

    def write_table(self, summary: dict) -> None:
        self.stdout.write(f"submission {summary['id']}: {summary['state']} ({summary['vendor']}, {summary['card']})")
        if summary["error_code"]:
            self.stdout.write(f"  rejected [{summary['error_code']}]: {summary['error_message']}")
        verdict = summary["verdict"] or {}
        for criterion in verdict.get("criteria", []):
            self.stdout.write(f"  {criterion['status']:>14}  {criterion['id']}: {criterion['explanation']['en']}")
        for track, outcome in verdict.get("tracks", {}).items():
            self.stdout.write(f"  track {track}: level {outcome.get('level', 0)}")
