"""Errors of the upload and validation of bundles, one code per case."""

from django.utils.translation import gettext_lazy as _

from portal.errors import ErrorSpec, PortalError

SUBMISSION_ERRORS = {
    "bundle_missing": ErrorSpec(
        400, _("No file was sent in the multipart field 'bundle'. Attach the bundle file and send it again.")
    ),
    "bundle_too_large": ErrorSpec(
        413,
        _("The upload is larger than the limit of %(limit)s bytes. Check that you are sending the bundle file, or ask the staff to raise the limit."),
    ),
    "bundle_not_archive": ErrorSpec(
        400,
        _("The file %(name)s is not a tar archive. Upload the .tar bundle that 'python -m agent bundle' wrote."),
    ),
    "vendor_membership_missing": ErrorSpec(
        403,
        _("The user %(user)s is not a member of any vendor. Ask the certification staff to add you to your vendor."),
    ),
    "vendor_ambiguous": ErrorSpec(
        400,
        _("The user %(user)s belongs to several vendors (%(vendors)s). Name one of them in the field 'vendor'."),
    ),
    "vendor_not_member": ErrorSpec(
        403, _("You are not a member of the vendor %(vendor)s. Choose one of your vendors: %(vendors)s.")
    ),
    # Reasons a stored bundle is rejected during validation, besides the codes of certification.bundle.
    "vendor_mismatch": ErrorSpec(
        422,
        _("The bundle names the vendor %(bundle_vendor)s, but it was uploaded for %(vendor)s. Upload it with a token of %(bundle_vendor)s."),
    ),
    "card_not_registered": ErrorSpec(
        422,
        _("The card %(model)s (serial %(serial)s) is not a registered card of %(vendor)s. Ask the staff to register and approve it, then upload again."),
    ),
    "card_not_approved": ErrorSpec(
        422,
        _("The card %(model)s (serial %(serial)s) is registered but its peak TFLOPS are not approved yet. Ask the staff to check and approve it."),
    ),
    "rule_pack_unknown": ErrorSpec(
        422,
        _("The bundle uses the rule pack %(name)s (sha256 %(sha256)s), which the portal has not published. Run the agent with a published rule pack."),
    ),
    "reference_missing": ErrorSpec(
        422,
        _("The rule pack %(name)s has no reference bundle yet, so nothing can be compared. The staff must add one; upload again afterwards."),
    ),
    "reference_invalid": ErrorSpec(
        422,
        _("The reference bundle %(sha256)s of rule pack %(name)s failed verification (%(reason)s). The staff must replace it."),
    ),
}


class SubmissionError(PortalError):
    table = SUBMISSION_ERRORS
