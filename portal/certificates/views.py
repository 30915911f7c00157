"""Public certificate pages and the staff action that issues a certificate."""

import logging

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal.certificates.errors import CertificateError
from portal.certificates.models import Certificate
from portal.certificates.pdf import render_certificate_pdf, verification_url
from portal.certificates.services import issue_certificate
from portal.permissions import staff_required
from portal.submissions.models import Submission
from portal.submissions.views import IssueForm

logger = logging.getLogger(__name__)


def certificate_list(request):
    certificates = Certificate.objects.active().select_related("card__vendor", "rule_pack")
    return render(request, "certificates/list.html", {"certificates": certificates})


def certificate_verify(request):
    number = request.GET.get("number", "").strip()
    if number:
        return redirect("certificate-detail", number=number)
    return render(request, "certificates/verify.html")


def certificate_detail(request, number):
    certificate = Certificate.objects.select_related("card__vendor", "rule_pack", "issued_by").filter(number=number).first()
    if certificate is None:
        return render(request, "certificates/verify.html", {"number": number, "not_found": True}, status=404)
    return render(request, "certificates/detail.html", {"certificate": certificate, "verification_url": verification_url(certificate)})


def certificate_pdf(request, number):
    certificate = get_object_or_404(Certificate.objects.select_related("card__vendor", "rule_pack"), number=number)
    response = HttpResponse(render_certificate_pdf(certificate), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{certificate.number}.pdf"'
    return response


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
