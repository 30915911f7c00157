"""Public certificate pages, feeds and verification, and the staff actions that issue and revoke."""

import json
import logging

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.translation import get_language
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from certification.credentials import CredentialError, signing_key_ids
from portal.certificates.credentials import check_credential, key_status, portal_key, published_keys
from portal.certificates.errors import CertificateError
from portal.certificates.listing import ListingFilters, card_history, certificate_record, facets, listed_certificates, records_csv, shown_value
from portal.certificates.listing_cache import cached_listing, listing_cache_key
from portal.certificates.models import Certificate
from portal.certificates.pdf import render_certificate_pdf, verification_url
from portal.certificates.plots import level_history_svg, levels_by_track_svg
from portal.certificates.services import issue_certificate, revoke_certificate
from portal.links import public_base_url
from portal.permissions import staff_required
from portal.registry.models import Card
from portal.submissions.models import Submission
from portal.submissions.views import IssueForm

logger = logging.getLogger(__name__)

CREDENTIAL_MAX_BYTES = 256 * 1024
LISTING_PAGE_SIZE = 100


def certificate_list(request):
    """Render the public listing in pages of LISTING_PAGE_SIZE rows; the static site export gets every row on one page.

    An invalid filter or page is left out and named in a message above the
    rows, so an old or mistyped link still shows the listing.
    The rows, filters and page links are cached per language, filters and page
    until the data changes (portal.certificates.listing_cache).
    """
    filters, errors = ListingFilters.from_params(request.GET)
    if getattr(request, "static_export", False):
        body = render_to_string("certificates/listing_body.html", _listing_context(filters, None), request=request)
        return render(request, "certificates/list.html", {"body": body})
    page_number = _page_number(request.GET.get("page", ""), filters, errors)
    key = listing_cache_key("list", get_language(), filters, page_number)
    body = cached_listing(key, lambda: render_to_string("certificates/listing_body.html", _listing_context(filters, page_number), request=request))
    return render(request, "certificates/list.html", {"body": body, "errors": errors})


def _page_number(requested: str, filters: ListingFilters, errors: list[CertificateError]) -> str:
    if requested == "" or (requested.isdigit() and len(requested) <= 6 and int(requested) >= 1):
        return requested or "1"
    last = Paginator(listed_certificates(filters), LISTING_PAGE_SIZE).num_pages
    errors.append(CertificateError("page_invalid", page=shown_value(requested), last=last))
    return "1"


def _listing_context(filters: ListingFilters, page_number: str | None) -> dict:
    certificates = listed_certificates(filters)
    page = None
    if page_number is not None:
        page = Paginator(certificates, LISTING_PAGE_SIZE).get_page(page_number)
        certificates = page.object_list
    return {"certificates": certificates, "page": page, "filters": filters, "facets": facets(), "query_string": filters.as_query()}


def certificate_feed_json(request):
    filters, errors = ListingFilters.from_params(request.GET)
    if errors:
        return _filter_error_response(errors)
    records = [certificate_record(item, public_base_url(request)) for item in listed_certificates(filters)]
    return JsonResponse({"certificates": records, "count": len(records)}, json_dumps_params={"ensure_ascii": False})


def certificate_feed_csv(request):
    filters, errors = ListingFilters.from_params(request.GET)
    if errors:
        return _filter_error_response(errors)
    records = [certificate_record(item, public_base_url(request)) for item in listed_certificates(filters)]
    response = HttpResponse(records_csv(records), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="certificates.csv"'
    return response


def _filter_error_response(errors: list[CertificateError]) -> JsonResponse:
    """Return 400 naming every invalid filter, because a script reading a feed must not get rows it did not ask for."""
    body = {"code": errors[0].code, "detail": errors[0].detail, "errors": [{"code": error.code, "detail": error.detail} for error in errors]}
    return JsonResponse(body, status=400, json_dumps_params={"ensure_ascii": False})


def certificate_plot(request):
    return HttpResponse(levels_by_track_svg(Certificate.objects.all()), content_type="image/svg+xml")


def card_detail(request, card_id):
    card = get_object_or_404(Card.objects.select_related("vendor"), pk=card_id)
    events = card_history(card)
    return render(request, "certificates/card.html", {"card": card, "events": events, "plot": level_history_svg(events)})


def revocation_list(request):
    revoked = Certificate.objects.filter(revoked_at__isnull=False).select_related("card__vendor", "rule_pack").order_by("-revoked_at")
    return render(request, "certificates/revoked.html", {"certificates": revoked})


def revocation_list_json(request):
    revoked = Certificate.objects.filter(revoked_at__isnull=False).select_related("card__vendor", "rule_pack").order_by("-revoked_at")
    records = [certificate_record(item, public_base_url(request)) for item in revoked]
    return JsonResponse({"revoked": records, "count": len(records)}, json_dumps_params={"ensure_ascii": False})


def certificate_verify(request):
    number = request.GET.get("number", "").strip()
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
            raise CredentialError("credential_too_large", f"the credential is over {CREDENTIAL_MAX_BYTES} bytes")
        envelope = json.loads(raw.decode("utf-8"))
        claims = check_credential(envelope)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return {"valid": False, "code": "credential_invalid", "detail": str(CertificateError("credential_invalid", reason=f"not JSON ({error})").detail)}, 400
    except CredentialError as error:
        return {"valid": False, "code": error.code, "detail": str(CertificateError("credential_invalid", reason=str(error)).detail)}, 400
    certificate = Certificate.objects.filter(number=claims.get("number")).first()
    if certificate is None:
        state = "unknown"
    elif certificate.is_revoked:
        state = "revoked"
    else:
        state = "valid"
    key_id = next((item for item in signing_key_ids(envelope) if key_status(item) != "unknown"), "")
    result = {"valid": state == "valid", "signature": "valid", "key_id": key_id, "key_status": key_status(key_id), "status": state, "claims": claims}
    if certificate is not None and certificate.is_revoked:
        result.update(revoked_at=certificate.revoked_at.isoformat(), revoked_reason=certificate.revoked_reason)
    return result, 200


@staff_required
@require_POST
def certificate_issue(request, submission_pk):
    submission = get_object_or_404(Submission, pk=submission_pk)
    form = IssueForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.errors.as_text())
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
