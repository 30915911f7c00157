"""Notices of an upload that made no new submission, one code per case. The API sends the code and the sentence."""

from django.utils.translation import gettext_lazy as _

UPLOAD_NOTICES = {
    "bundle_already_uploaded": _(
        "This bundle was already uploaded as submission %(submission)s, so no new submission was made. Open the submission to see its state."
    ),
    "bundle_revalidating": _(
        "This bundle was already uploaded as submission %(submission)s and rejected (%(code)s). What caused that rejection may have been "
        "fixed since, so the portal validates the submission again; the earlier rejection stays listed on the submission's page."
    ),
}


NO_NOTICE = {"code": "", "detail": ""}


def upload_notice(submission_id: int, rejection_code: str = "") -> dict:
    """Return {"code", "detail"} for a bundle uploaded again: validated again after `rejection_code`, or, without one, left as it was."""
    if rejection_code:
        return {"code": "bundle_revalidating", "detail": str(UPLOAD_NOTICES["bundle_revalidating"]) % {"submission": submission_id, "code": rejection_code}}
    return {"code": "bundle_already_uploaded", "detail": str(UPLOAD_NOTICES["bundle_already_uploaded"]) % {"submission": submission_id}}
