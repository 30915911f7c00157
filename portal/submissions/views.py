"""Vendor and staff pages for submissions."""

import logging

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from portal.certificates.models import Track
from portal.permissions import staff_required
from portal.registry.services import vendors_of
from portal.submissions.errors import SubmissionError
from portal.submissions.models import Submission
from portal.submissions.services import receive_bundle
from portal.submissions.uploads import TOO_LARGE_FLAG

logger = logging.getLogger(__name__)


class UploadForm(forms.Form):
    vendor = forms.ChoiceField(label=_("Vendor"))
    bundle = forms.FileField(label=_("Bundle (.tar)"), required=False)

    def __init__(self, *args, vendors, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["vendor"].choices = [(vendor.slug, vendor.name) for vendor in vendors]


class IssueForm(forms.Form):
    track = forms.ChoiceField(label=_("Track"), choices=Track.choices)
    level = forms.TypedChoiceField(label=_("Level"), choices=[(1, "I"), (2, "II"), (3, "III")], coerce=int)


@login_required
def submission_list(request):
    submissions = Submission.objects.filter(vendor__in=vendors_of(request.user)).select_related("vendor", "card")
    return render(request, "submissions/list.html", {"submissions": submissions})


@login_required
def submission_detail(request, pk):
    submission = get_object_or_404(Submission.objects.select_related("vendor", "card", "rule_pack"), pk=pk)
    if not submission.is_visible_to(request.user):
        raise Http404
    report = getattr(submission, "report", None)
    context = {"submission": submission, "report": report, "issue_form": IssueForm()}
    return render(request, "submissions/detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def submission_upload(request):
    vendors = vendors_of(request.user)
    form = UploadForm(request.POST or None, request.FILES or None, vendors=vendors)
    if request.method == "POST" and form.is_valid():
        try:
            submission = _receive_from_form(request, form, vendors)
        except SubmissionError as error:
            logger.info("browser upload by %s rejected: %s", request.user.get_username(), error.code)
            form.add_error(None, f"{error.detail} [{error.code}]")
        else:
            return redirect("submission-detail", pk=submission.pk)
    return render(request, "submissions/upload.html", {"form": form, "vendors": vendors}, status=_form_status(request, form))


def _receive_from_form(request, form, vendors):
    if getattr(request, TOO_LARGE_FLAG, False):
        raise SubmissionError("bundle_too_large", limit=settings.BUNDLE_UPLOAD_MAX_BYTES)
    upload = form.cleaned_data.get("bundle")
    if upload is None:
        raise SubmissionError("bundle_missing")
    vendor = next(vendor for vendor in vendors if vendor.slug == form.cleaned_data["vendor"])
    submission, _created = receive_bundle(vendor=vendor, upload=upload, actor=request.user, remote_addr=request.META.get("REMOTE_ADDR"))
    return submission


def _form_status(request, form) -> int:
    return 400 if request.method == "POST" and form.errors else 200


@staff_required
def staff_queue(request):
    states = request.GET.getlist("state") or [Submission.State.RECEIVED, Submission.State.VALIDATING, Submission.State.JUDGED]
    submissions = Submission.objects.filter(state__in=states).select_related("vendor", "card", "rule_pack")
    return render(request, "submissions/queue.html", {"submissions": submissions, "states": states})
