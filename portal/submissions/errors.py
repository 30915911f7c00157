"""Errors of the upload and validation of bundles, one code per case."""

from django.utils.translation import gettext_lazy as _

from portal.errors import ErrorSpec, PortalError

SUBMISSION_ERRORS = {
    "bundle_missing": ErrorSpec(
        400, _("No file was sent in the multipart field 'bundle'. Attach the bundle file and send it again.")
    ),
    "bundle_empty": ErrorSpec(
        400, _("The file %(name)s is empty (0 bytes). Choose the .tar bundle that 'python -m agent bundle' wrote and upload it.")
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
    "upload_digest_invalid": ErrorSpec(
        400, _("The sha256 %(sha256)s is not 64 hexadecimal characters. Send the sha256 of the whole bundle file.")
    ),
    "upload_name_invalid": ErrorSpec(
        400, _("The file name %(name)s contains the control character %(character)s. Send the bundle's file name without control characters.")
    ),
    "upload_size_invalid": ErrorSpec(
        400, _("The size %(size)s is not a positive number of bytes. Send the size of the bundle file.")
    ),
    "upload_size_mismatch": ErrorSpec(
        409, _("An open upload of this bundle declared %(stored)s bytes, not %(size)s. Check that you are sending the same file; its sha256 names the upload.")
    ),
    "upload_session_not_found": ErrorSpec(
        404, _("No upload %(session)s exists for your vendors. Start a new upload.")
    ),
    "upload_session_expired": ErrorSpec(
        410,
        _("The upload %(session)s received no bytes for %(hours)s hours and expired; its received bytes were deleted. Start a new upload of the file (running 'python -m agent upload' again does that)."),
    ),
    "upload_session_completed": ErrorSpec(
        409, _("The upload %(session)s is already complete. Open its submission instead of sending more bytes.")
    ),
    "upload_range_missing": ErrorSpec(
        400, _("The header Content-Range is missing or not of the form 'bytes START-END/TOTAL'. Send it with every byte range.")
    ),
    "upload_range_invalid": ErrorSpec(
        400, _("The range %(range)s does not fit the upload of %(size)s bytes, or does not match the body length. Send bytes inside the declared size.")
    ),
    "upload_offset_mismatch": ErrorSpec(
        409, _("The range starts at byte %(start)s but the portal has %(received)s bytes. Resume from byte %(received)s.")
    ),
    "upload_chunk_too_large": ErrorSpec(
        413, _("A range of %(length)s bytes is larger than the limit of %(limit)s bytes per request. Send smaller ranges.")
    ),
    "upload_incomplete": ErrorSpec(
        409, _("The portal has %(received)s of %(size)s bytes of this upload. Send the remaining bytes, then complete it.")
    ),
    "upload_digest_mismatch": ErrorSpec(
        400, _("The bytes received have the sha256 %(actual)s, not the declared %(sha256)s. The received bytes were discarded; upload the file again.")
    ),
    "reference_peaks_missing": ErrorSpec(
        400, _("No peak dense TFLOPS of the reference card were given. Enter the datasheet figure for at least one data type.")
    ),
    "revalidation_in_progress": ErrorSpec(
        409, _("Submission %(submission)s is %(state)s, so it cannot be validated again yet. Wait until it is judged or rejected.")
    ),
    "revalidation_certified": ErrorSpec(
        409, _("Certificate %(certificate)s was issued from submission %(submission)s. Revoke the certificate before validating the submission again.")
    ),
    # Reasons a stored bundle is rejected during validation, besides the codes of certification.bundle.
    "vendor_mismatch": ErrorSpec(
        422,
        _("The bundle names the vendor %(bundle_vendor)s, but it was uploaded for the vendor with the slug %(vendor)s and the name "
          "%(vendor_name)s, and a bundle must name one of these. Start a new run with 'python -m agent run --vendor %(vendor)s', "
          "pack it and upload that bundle, or upload this one for the vendor %(bundle_vendor)s."),
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
    # Refusals of a reference bundle that staff upload. `%(value)s` is the value that verification recorded.
    "reference_key_unknown": ErrorSpec(
        422,
        _("The bundle is not signed by a registered reference lab key (it is signed with the key %(value)s, for example a vendor key), so "
          "it cannot be a reference. Pack the reference run with the reference lab's private key ('python -m agent bundle --key LAB.key'). "
          "If that is the lab's key, register its .pub file first in Django admin under Signing keys, for a vendor marked as reference lab."),
    ),
    "reference_key_not_valid": ErrorSpec(
        422,
        _("The bundle was signed at %(value)s, when its reference lab key was revoked or outside its validity window. Pack the reference run "
          "again with a current reference lab key, registered in Django admin under Signing keys, and upload the new file."),
    ),
    "reference_tampered": ErrorSpec(
        422,
        _("The bundle was changed after the reference lab signed it (%(reason)s: %(value)s), so it cannot be trusted. Pack the reference "
          "run folder again with the reference lab's key and upload the new file, without editing it afterwards."),
    ),
    "reference_unverified": ErrorSpec(
        422,
        _("The bundle failed verification (%(reason)s: %(value)s). Pack the reference run folder again with the agent and the reference "
          "lab's key, then upload the new file."),
    ),
}


class SubmissionError(PortalError):
    table = SUBMISSION_ERRORS
