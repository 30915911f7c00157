"""Errors of human evaluation: building pairs, judging, adjudicating and signing off."""

from django.utils.translation import gettext_lazy as _

from portal.errors import ErrorSpec, PortalError

EVALUATION_ERRORS = {
    "submission_not_judged": ErrorSpec(
        409, _("Submission %(submission)s is in state %(state)s, not judged. Pairs are built once its validation finished.")
    ),
    "no_human_criteria": ErrorSpec(
        409, _("The verdict of submission %(submission)s has no pending human evaluation criterion. Nothing needs reviewers.")
    ),
    "pairs_unsupported": ErrorSpec(
        409, _("Workload %(workload)s of kind %(kind)s has no source of pairs for human evaluation. Ask the portal maintainers to add one.")
    ),
    "pairs_missing": ErrorSpec(
        409, _("No prompt of workload %(workload)s has both a vendor output and a reference output. Check that both runs wrote their outputs.")
    ),
    "outcome_invalid": ErrorSpec(400, _("The judgement %(value)s is invalid. Use good, same or bad.")),
    "pair_identical": ErrorSpec(409, _("Pair %(position)s is byte-identical and recorded as Same; it needs no judgement.")),
    "set_signed_off": ErrorSpec(
        409, _("Set %(set)s is already signed off by %(signer)s. Judgements are closed; a new sign-off may supersede the old one.")
    ),
    "not_staff": ErrorSpec(403, _("Only certification staff can do this; %(user)s is not staff.")),
    "password_invalid": ErrorSpec(403, _("The password of %(user)s is wrong. Re-enter your own password to sign off.")),
    "statement_invalid": ErrorSpec(
        400, _("The sign-off statement contains the control character %(character)s. Write it as plain text; line breaks are allowed.")
    ),
    "note_invalid": ErrorSpec(
        400, _("The note contains the control character %(character)s. Write it as plain text; line breaks are allowed.")
    ),
    "statement_missing": ErrorSpec(400, _("The sign-off statement is empty. Write what you checked and what you conclude.")),
    "set_incomplete": ErrorSpec(
        409, _("%(unjudged)s pairs are not judged and %(disputed)s disagreements are not adjudicated. Finish them before signing off.")
    ),
    "no_disagreement": ErrorSpec(409, _("Reviewers agree on pair %(position)s; only disagreements are adjudicated.")),
}


class EvaluationError(PortalError):
    table = EVALUATION_ERRORS
