"""Errors of issuing and revoking certificates."""

from django.utils.translation import gettext_lazy as _

from portal.errors import ErrorSpec, PortalError

CERTIFICATE_ERRORS = {
    "track_unknown": ErrorSpec(400, _("The track %(track)s is unknown. Use one of: %(tracks)s.")),
    "level_invalid": ErrorSpec(400, _("The level %(level)s is invalid. Use 1, 2 or 3.")),
    "submission_not_judged": ErrorSpec(
        409, _("Submission %(submission)s is in state %(state)s, not judged. Wait for its validation to finish.")
    ),
    "verdict_not_passing": ErrorSpec(
        409,
        _("The verdict of submission %(submission)s grants %(track)s level %(granted)s, not level %(level)s. A certificate can only be issued for a level the verdict grants."),
    ),
    "no_passing_submission": ErrorSpec(
        409,
        _("No judged submission of card %(card)s grants %(track)s level %(level)s. Upload a bundle that passes, then issue the certificate."),
    ),
    "already_certified": ErrorSpec(
        409,
        _("Card %(card)s already holds certificate %(number)s for %(track)s level %(level)s under rule pack %(rule_pack)s. Revoke it first to issue a new one."),
    ),
    "card_not_found": ErrorSpec(404, _("No card matches %(card)s. Give the card id, or the vendor and model as VENDOR/MODEL.")),
    "not_staff": ErrorSpec(403, _("Only certification staff can issue certificates; %(user)s is not staff.")),
    "reason_missing": ErrorSpec(400, _("The revocation reason is empty. Write why certificate %(number)s is revoked; the reason is public.")),
    "reason_invalid": ErrorSpec(
        400, _("The revocation reason contains the control character %(character)s. Write the reason as plain text; line breaks are allowed.")
    ),
    "not_staff_revoke": ErrorSpec(403, _("Only certification staff can revoke certificates; %(user)s is not staff.")),
    "credential_invalid": ErrorSpec(400, _("The credential could not be verified: %(reason)s. Upload the JSON file downloaded from the certificate page.")),
    "filter_text_invalid": ErrorSpec(400, _("The filter %(name)s=%(value)s contains control characters and was ignored. Search with plain text.")),
    "filter_not_listed": ErrorSpec(
        400,
        _("No certificate matches the filter %(name)s=%(value)s, so it was ignored. Use one of: %(known)s, or leave %(name)s out to list every certificate."),
    ),
    "filter_not_listed_none_issued": ErrorSpec(
        400, _("No certificate matches the filter %(name)s=%(value)s, so it was ignored. No certificate has been issued yet, so leave %(name)s out.")
    ),
    "already_revoked": ErrorSpec(409, _("Certificate %(number)s was already revoked on %(revoked_at)s.")),
    "key_compromised": ErrorSpec(
        400,
        _("The credential is signed by key %(key_id)s, which was marked compromised on %(date)s (%(reason)s). Anyone may have signed it, so it is not trustworthy. Download the credential again from the certificate page."),
    ),
    "credential_key_not_found": ErrorSpec(404, _("No credential key matches %(key_id)s. Give a full key id, or a unique prefix of 8 or more characters, from: %(known)s.")),
    "compromise_reason_missing": ErrorSpec(400, _("The reason is empty. Write why key %(key_id)s is compromised; the reason is public.")),
    "credential_key_current": ErrorSpec(
        409, _("Key %(key_id)s is the current credential key. Run rotate_credential_key first, then mark the retired key compromised.")
    ),
    "credential_key_already_compromised": ErrorSpec(409, _("Key %(key_id)s was already marked compromised on %(date)s.")),
}


# The listing page drops an invalid filter and shows the other rows, so its sentences report the filter as ignored.
# The JSON and CSV feeds reject the whole request with HTTP 400 and return no rows, and these sentences report that.
FEED_FILTER_MESSAGES = {
    "filter_invalid": _("The filter %(name)s=%(value)s is invalid, so the feed rejected the request and returned no rows. "
                        "Use one of: %(allowed)s, or leave %(name)s out."),
    "filter_text_invalid": _("The filter %(name)s=%(value)s contains control characters, so the feed rejected the request and returned no rows. "
                             "Search with plain text."),
    "filter_not_listed": _("No certificate matches the filter %(name)s=%(value)s, so the feed rejected the request and returned no rows. "
                           "Use one of: %(known)s, or leave %(name)s out to get every certificate."),
    "filter_not_listed_none_issued": _("No certificate matches the filter %(name)s=%(value)s, so the feed rejected the request and returned no rows. "
                                       "No certificate has been issued yet, so leave %(name)s out."),
}


class CertificateError(PortalError):
    table = CERTIFICATE_ERRORS


def feed_detail(error: PortalError) -> str:
    """Return the sentence of `error` for a feed response, which reports a filter error as a rejected request, not an ignored filter."""
    message = FEED_FILTER_MESSAGES.get(error.code)
    return str(message % error.params) if message is not None else error.detail

# The reasons a credential fails verification, keyed by CredentialError.reason. Each completes the sentence of `credential_invalid`.
CREDENTIAL_REASONS = {
    "not_utf8": _("the text is not UTF-8"),
    "not_json": _("the text is not JSON"),
    "credential_too_large": _("it is larger than %(limit)s bytes"),
    "not_envelope": _("it is not a DSSE envelope"),
    "payload_type": _("its payload type %(payload_type)s is not that of a certificate credential"),
    "key_unknown": _("it is signed by key %(key_ids)s, which is none of the portal's current and retired credential keys"),
    "signature_invalid": _("no signature of it verifies with the portal's keys"),
}
