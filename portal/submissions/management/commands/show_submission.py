"""Print a submission's state and its validation report, for staff at a terminal and for scripts."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import translation
from django.utils.translation import gettext as _

from portal.submissions.models import Submission
from portal.submissions.templatetags.portal_tags import status_label, track_label

# --lang values, as the agent names them, and the portal's language codes (settings.LANGUAGES).
LANGUAGE_CODES = {"zh": "zh-hans", "en": "en"}


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


def track_line(track: str, outcome: dict) -> str:
    """Return a track's line in the active language. A track whose highest level is 0, like DPO in the standard, has no requirements."""
    if outcome.get("max_level", 1) == 0:
        return _("track %(track)s: no requirements in this rule pack") % {"track": track}
    return _("track %(track)s: level %(level)s") % {"track": track, "level": outcome.get("level", 0)}


class Command(BaseCommand):
    help = "Print the state and validation report of one submission."

    def add_arguments(self, parser):
        parser.add_argument("submission", type=int, help="submission id, as `python -m agent upload` prints it")
        parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
        parser.add_argument("--lang", choices=sorted(LANGUAGE_CODES), default="en",
                            help="language of the table: zh (Simplified Chinese) or en (default: en)")

    def handle(self, *args, **options):
        submission = Submission.objects.select_related("vendor", "card", "report").filter(pk=options["submission"]).first()
        if submission is None:
            raise CommandError(f"submission {options['submission']} not found; list them on the staff queue page")
        summary = submission_summary(submission)
        if options["json"]:
            self.stdout.write(json.dumps(summary, ensure_ascii=False))
            return
        with translation.override(LANGUAGE_CODES[options["lang"]]):
            self.write_table(summary, options["lang"])

    def write_table(self, summary: dict, language: str) -> None:
        """Write the summary as text in the active language; `language` picks the criterion explanations ("zh" or "en")."""
        if language == "en":
            # The English table keeps the stored codes (state, status, track) that scripts and staff search for.
            state, status_of, track_of = summary["state"], str, str
        else:
            state = str(Submission.State(summary["state"]).label)
            status_of, track_of = (lambda status: str(status_label(status))), (lambda track: str(track_label(track)))
        self.stdout.write(_("submission %(id)s: %(state)s (%(vendor)s, %(card)s)") % {
            "id": summary["id"], "state": state, "vendor": summary["vendor"], "card": summary["card"]})
        if summary["error_code"]:
            self.stdout.write("  " + _("rejected [%(code)s]: %(message)s") % {"code": summary["error_code"], "message": summary["error_message"]})
        verdict = summary["verdict"] or {}
        for criterion in verdict.get("criteria", []):
            self.stdout.write(f"  {status_of(criterion['status']):>14}  {criterion['id']}: {criterion['explanation'][language]}")
        for track, outcome in verdict.get("tracks", {}).items():
            self.stdout.write("  " + track_line(track_of(track), outcome))
