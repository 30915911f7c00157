"""Public certificate pages, feeds and verification, and the staff actions that issue and revoke."""

import json
import logging

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import get_language, pgettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from certification.credentials import CredentialError, signing_key_ids
from portal.certificates.credentials import CompromisedKeyError, check_credential, key_status, portal_key, published_keys, shown_time
from portal.certificates.errors import CREDENTIAL_REASONS, CertificateError, feed_detail
from portal.certificates.listing import (
    LISTING_PAGE_SIZE, ListingFilters, card_history, certificate_record, facets, feed_json, feed_records, listed_certificates, page_count,
    records_csv,
)
from portal.certificates.listing_cache import cached, cached_listing, listing_cache_key
from portal.certificates.models import Certificate
from portal.certificates.pdf import render_certificate_pdf, verification_url
from portal.certificates.plots import level_history_svg, levels_by_track_svg
from portal.certificates.services import issue_certificate, revoke_certificate
from portal.errors import PortalError
from portal.links import public_base_url
from portal.permissions import staff_required
from portal.query_params import ParameterError, read_page, response_status
from portal.text import first_control_character
from portal.registry.models import Card
from portal.submissions.models import Submission
from portal.submissions.views import IssueForm

logger = logging.getLogger(__name__)

CREDENTIAL_MAX_BYTES = 256 * 1024


def certificate_list(request):
    """Render the public listing in pages of LISTING_PAGE_SIZE rows; the static site export gets every row on one page.

    An invalid filter, or a vendor or rule pack that no certificate has, is left
    out and named in a message above the rows with HTTP 400, so an old or
    mistyped link still shows the listing. An invalid page is named the same
    way, with HTTP 400 (not a whole number from 1) or 404 (past the last page),
    and page 1 or the last page is shown instead.
    The rows, filters and page links are cached per language, filters and page
    until the data changes (portal.certificates.listing_cache).
    """
    filters, errors = ListingFilters.from_params(request.GET)
    if getattr(request, "static_export", False):
        body = render_to_string("certificates/listing_body.html", _listing_context(filters, None), request=request)
        return render(request, "certificates/list.html", {"body": body})
    page_number, page_error = _read_page(request, filters)
    key = listing_cache_key("list", get_language(), filters, page_number)
    body = cached_listing(key, lambda: render_to_string("certificates/listing_body.html", _listing_context(filters, page_number), request=request))
    errors += [page_error] if page_error else []
    context = {"body": body, "errors": errors, "page_error": page_error, "shown_page": page_number}
    return render(request, "certificates/list.html", context, status=response_status(errors))


def _read_page(request, filters: ListingFilters) -> tuple[int, ParameterError | None]:
    requested = request.GET.get("page", "")
    if requested == "":
        return 1, None
    last = cached(listing_cache_key("pages", filters), lambda: page_count(filters))
    return read_page(requested, last)


def _listing_context(filters: ListingFilters, page_number: int | None) -> dict:
    certificates = listed_certificates(filters)
    page = None
    if page_number is not None:
        page = Paginator(certificates, LISTING_PAGE_SIZE).get_page(page_number)
        certificates = page.object_list
    return {"certificates": certificates, "page": page, "filters": filters, "facets": facets(), "query_string": filters.as_query()}


def certificate_feed_json(request):
    """Return the listing's rows as JSON: every row, or one page of them with `?page=N`."""
    filters, page, error_response = _feed_request(request)
    if error_response is not None:
        return error_response
    base_url = public_base_url(request)
    text = cached(listing_cache_key("feed-json", filters, page, base_url), lambda: feed_json(filters, page, base_url))
    return HttpResponse(text, content_type="application/json")


def certificate_feed_csv(request):
    """Return the listing's rows as CSV: every row, or one page of them with `?page=N`."""
    filters, page, error_response = _feed_request(request)
    if error_response is not None:
        return error_response
    base_url = public_base_url(request)
    text = cached(listing_cache_key("feed-csv", filters, page, base_url), lambda: records_csv(feed_records(filters, page, base_url)))
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="certificates.csv"'
    return response


def _feed_request(request) -> tuple[ListingFilters, int | None, JsonResponse | None]:
    """Read a feed's filters and optional page; the third value is the error response when any of them is invalid."""
    filters, errors = ListingFilters.from_params(request.GET)
    page = None
    if request.GET.get("page", "") != "":
        page, page_error = _read_page(request, filters)
        errors += [page_error] if page_error else []
    if errors:
        return filters, page, _filter_error_response(errors)
    return filters, page, None


def _filter_error_response(errors: list[PortalError]) -> JsonResponse:
    """Return the first error's status naming every invalid parameter, because a script reading a feed must not get rows it did not ask for."""
    body = {"code": errors[0].code, "detail": feed_detail(errors[0]), "errors": [{"code": error.code, "detail": feed_detail(error)} for error in errors]}
    return JsonResponse(body, status=errors[0].status, json_dumps_params={"ensure_ascii": False})


def certificate_plot(request, language: str | None = None):
    """Return the bar chart of valid certificates per track and level, with track names in `language`.

    Without `language` the chart follows the request's language. An unknown
    language code is a 404, because every chart URL must name a language the
    portal translates into.
    """
    if language is None:
        language = get_language()
    elif language not in dict(settings.LANGUAGES):
        raise Http404(f"no chart in language {language!r}; use one of {', '.join(dict(settings.LANGUAGES))}")
    svg = cached(listing_cache_key("feed-plot", language), lambda: _plot_in_language(language))
    return HttpResponse(svg, content_type="image/svg+xml")


def _plot_in_language(language: str) -> str:
    with translation.override(language):
        return levels_by_track_svg(Certificate.objects.all())


def card_detail(request, card_id):
    card = get_object_or_404(Card.objects.select_related("vendor"), pk=card_id)
    events = card_history(card)
    return render(request, "certificates/card.html", {"card": card, "events": events, "plot": level_history_svg(events)})


def revocation_list(request):
    revoked = Certificate.objects.filter(revoked_at__isnull=False).select_related("card__vendor", "rule_pack").order_by("-revoked_at")
    return render(request, "certificates/revoked.html", {"certificates": revoked})


def revocation_list_json(request):
    base_url = public_base_url(request)
    return HttpResponse(cached(listing_cache_key("revoked-json", base_url), lambda: _revoked_json(base_url)), content_type="application/json")


def _revoked_json(base_url: str) -> str:
    revoked = Certificate.objects.filter(revoked_at__isnull=False).select_related("card__vendor", "rule_pack").order_by("-revoked_at")
    records = [certificate_record(item, base_url) for item in revoked]
    return json.dumps({"revoked": records, "count": len(records)}, ensure_ascii=False)


def certificate_verify(request):
    number = request.GET.get("number", "").strip()
    if "/" in number or first_control_character(number):
        # No certificate number contains a slash or a control character, and the detail URL cannot carry either.
        return render(request, "certificates/verify.html", {"number": number, "not_found": True}, status=404)
    if number:
        return redirect("certificate-detail", number=number)
    return render(request, "certificates/verify.html")


def certificate_detail(request, number):
    certificate = Certificate.objects.select_related("card__vendor", "rule_pack", "issued_by").filter(number=number).first()
    if certificate is None:
        return render(request, "certificates/verify.html", {"number": number, "not_found": True}, status=404)
    return render(request, "certificates/detail.html", {"certificate": certificate, "verification_url": verification_url(certificate, request)})


def certificate_pdf(request, number):
    certificate = get_object_or_404(Certificate.objects.select_related("card__vendor", "rule_pack"), number=number)
    response = HttpResponse(render_certificate_pdf(certificate, request), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{certificate.number}.pdf"'
    return response


def certificate_credential(request, number):
    certificate = get_object_or_404(Certificate, number=number, credential__isnull=False)
    response = JsonResponse(certificate.credential)
    response["Content-Disposition"] = f'attachment; filename="{certificate.number}.credential.json"'
    return response


@require_GET
def credential_public_key(request):
    return HttpResponse(portal_key().public_key.public_pem(), content_type="application/x-pem-file")


@require_GET
def credential_public_keys(request):
    """List the current and every retired credential key, so credentials signed before a rotation still verify offline."""
    return JsonResponse({"keys": published_keys()}, json_dumps_params={"ensure_ascii": False})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def credential_verify(request):
    """Check a credential's signature and the certificate's current state; JSON in, JSON out, or the form page."""
    wants_json = request.content_type == "application/json"
    if request.method == "GET":
        return render(request, "certificates/credential_verify.html")
    raw = request.body if wants_json else request.POST.get("credential", "").encode("utf-8")
    result, status = _verify_credential_bytes(raw)
    if wants_json:
        return JsonResponse(result, status=status, json_dumps_params={"ensure_ascii": False})
    return render(request, "certificates/credential_verify.html", {"result": result}, status=status)


def _verify_credential_bytes(raw: bytes) -> tuple[dict, int]:
    try:
        if len(raw) > CREDENTIAL_MAX_BYTES:
            raise CredentialError("credential_too_large", f"the credential is over {CREDENTIAL_MAX_BYTES} bytes", limit=CREDENTIAL_MAX_BYTES)
        envelope = json.loads(raw.decode("utf-8"))
        claims = check_credential(envelope)
    except UnicodeDecodeError as error:
        return _credential_failure("credential_invalid", "not_utf8", technical_detail=str(error)), 400
    except json.JSONDecodeError as error:
        return _credential_failure("credential_invalid", "not_json", technical_detail=str(error)), 400
    except CredentialError as error:
        params = {key: value for key, value in error.params.items() if key != "error"}
        return _credential_failure(error.code, error.reason, technical_detail=error.params.get("error", ""), **params), 400
    except CompromisedKeyError as error:
        return _compromised_result(error.key), 400
    certificate = Certificate.objects.filter(number=claims.get("number")).first()
    if certificate is None:
        state = "unknown"
    elif certificate.is_revoked:
        state = "revoked"
    else:
        state = "valid"
    key_id = next((item for item in signing_key_ids(envelope) if key_status(item) in ("current", "retired")), "")
    result = {"valid": state == "valid", "signature": "valid", "key_id": key_id, "key_status": key_status(key_id), "status": state, "claims": claims}
    if certificate is not None and certificate.is_revoked:
        result.update(revoked_at=certificate.revoked_at.isoformat(), revoked_reason=certificate.revoked_reason)
    return result, 200


def _credential_failure(code: str, reason: str, technical_detail: str = "", **params) -> dict:
    """Return the result of a credential that failed verification, its reason in the request's language.

    `technical_detail` is the English message of the JSON parser or the DSSE
    library (with the position of the fault), kept apart from the translated sentence.
    """
    reason_text = CREDENTIAL_REASONS[reason] % params
    result = {"valid": False, "code": code, "detail": CertificateError("credential_invalid", reason=reason_text).detail}
    if technical_detail:
        result["technical_detail"] = technical_detail
    return result


def _compromised_result(key) -> dict:
    error = CertificateError("key_compromised", key_id=key.key_id, date=shown_time(key.compromised_at), reason=key.compromised_reason)
    return {
        "valid": False, "code": error.code, "detail": error.detail, "signature": "key_compromised",
        "key_id": key.key_id, "key_status": "compromised",
        "key_compromised_at": key.compromised_at.isoformat(), "key_compromised_reason": key.compromised_reason,
    }


def form_errors_text(form) -> str:
    """Return a form's errors as one line of "Label: error" sentences in the active language, for a message."""
    separator = pgettext("separator after a label", ": ")
    parts = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        prefix = f"{field.label}{separator}" if field is not None else ""
        parts.extend(prefix + str(error) for error in errors)
    return " ".join(parts)


@staff_required
@require_POST
def certificate_issue(request, submission_pk):
    submission = get_object_or_404(Submission, pk=submission_pk)
    form = IssueForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors_text(form))
        return redirect("submission-detail", pk=submission.pk)
    try:
        certificate = issue_certificate(submission=submission, track=form.cleaned_data["track"], level=form.cleaned_data["level"], issued_by=request.user)
    except CertificateError as error:
        logger.info("certificate for submission %s not issued by %s: %s", submission.pk, request.user.get_username(), error.code)
        messages.error(request, f"{error.detail} [{error.code}]")
        return redirect("submission-detail", pk=submission.pk)
    return redirect("certificate-detail", number=certificate.number)


@staff_required
@require_POST
def certificate_revoke(request, number):
    certificate = get_object_or_404(Certificate, number=number)
    try:
        revoke_certificate(certificate, reason=request.POST.get("reason", ""), revoked_by=request.user)
    except CertificateError as error:
        logger.info("certificate %s not revoked by %s: %s", number, request.user.get_username(), error.code)
        messages.error(request, f"{error.detail} [{error.code}]")
    return redirect("certificate-detail", number=number)
