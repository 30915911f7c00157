"""Vendor and staff pages for submissions."""

import logging
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.conf import settings
from django.db.models import Count, Q
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from portal.certificates.models import Track
from portal.permissions import is_reviewer, reviewer_required
from portal.query_params import read_choice, read_choices, read_paginated_page, read_search, response_status
from portal.registry.models import Vendor
from portal.registry.services import vendors_of
from portal.submissions import plots
from portal.submissions.errors import SubmissionError
from portal.submissions.models import Submission
from portal.submissions.services import notice_for_upload_again, receive_bundle, request_revalidation
from portal.submissions.uploads import TOO_LARGE_FLAG

logger = logging.getLogger(__name__)

# The upload page sends byte ranges of this size through the resumable API.
BROWSER_CHUNK_BYTES = 8 * 1024**2
# The upload page reads the file in parts of this size to hash it, with at most two parts in memory at once.
BROWSER_HASH_PART_BYTES = 8 * 1024**2
QUEUE_PAGE_SIZE = 100
# The queue shows these states when no state is chosen: the submissions that may still need staff.
QUEUE_DEFAULT_STATES = (Submission.State.RECEIVED, Submission.State.VALIDATING, Submission.State.JUDGED)


class UploadForm(forms.Form):
    vendor = forms.ChoiceField(label=_("Vendor"))
    # An empty file goes on to receive_bundle, which rejects it with bundle_empty, naming the file to choose instead.
    bundle = forms.FileField(label=_("Bundle (.tar)"), required=False, allow_empty_file=True)

    def __init__(self, *args, vendors, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["vendor"].choices = [(vendor.slug, vendor.name) for vendor in vendors]


class IssueForm(forms.Form):
    track = forms.ChoiceField(label=_("Track"), choices=Track.choices)
    level = forms.TypedChoiceField(label=_("Level"), choices=[(1, "I"), (2, "II"), (3, "III")], coerce=int)


@login_required
def start_page(request):
    """Send a user who just logged in to their first page: certification staff to the queue, everyone else to their submissions."""
    return redirect("staff-queue" if is_reviewer(request.user) else "submission-list")


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
    plot_indexes = [index for index, criterion in enumerate(report.criteria) if plots.plottable(criterion)] if report else []
    can_review = is_reviewer(request.user)
    context = {
        "submission": submission, "report": report, "issue_form": IssueForm(),
        "can_review": can_review, "plot_indexes": plot_indexes,
        "earlier_reports": _earlier_reports(submission, can_review),
    }
    return render(request, "submissions/detail.html", context)


def _earlier_reports(submission, can_review: bool):
    """Return the superseded reports shown on the page: all of them to staff, the earlier rejections to the vendor."""
    reports = submission.superseded_reports.select_related("rule_pack", "superseded_by")
    return reports if can_review else reports.filter(state=Submission.State.REJECTED)


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
    context = {
        "form": form, "vendors": vendors,
        "chunk_bytes": min(BROWSER_CHUNK_BYTES, settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES), "hash_part_bytes": BROWSER_HASH_PART_BYTES,
        "max_bytes": settings.BUNDLE_UPLOAD_MAX_BYTES,
        "too_large_error": SubmissionError("bundle_too_large", limit=settings.BUNDLE_UPLOAD_MAX_BYTES),
    }
    return render(request, "submissions/upload.html", context, status=_form_status(request, form))


def _receive_from_form(request, form, vendors):
    if getattr(request, TOO_LARGE_FLAG, False):
        raise SubmissionError("bundle_too_large", limit=settings.BUNDLE_UPLOAD_MAX_BYTES)
    upload = form.cleaned_data.get("bundle")
    if upload is None:
        raise SubmissionError("bundle_missing")
    vendor = next(vendor for vendor in vendors if vendor.slug == form.cleaned_data["vendor"])
    remote_addr = request.META.get("REMOTE_ADDR")
    submission, created = receive_bundle(vendor=vendor, upload=upload, actor=request.user, remote_addr=remote_addr)
    if not created:
        notice = notice_for_upload_again(submission.pk, actor=request.user, remote_addr=remote_addr)
        messages.info(request, f"{notice['detail']} [{notice['code']}]")
    return submission


def _form_status(request, form) -> int:
    return 400 if request.method == "POST" and form.errors else 200


@reviewer_required
def staff_queue(request):
    """Submissions by state, newest first, in pages of QUEUE_PAGE_SIZE; filter by state, vendor and a search on id, digest or file name.

    An invalid state, vendor or page is named above the rows and the
    response is 400 (or 404 past the last page), like the public listing.
    """
    errors = []
    states = read_choices(request.GET, "state", tuple(Submission.State.values), errors) or list(QUEUE_DEFAULT_STATES)
    vendors = Vendor.objects.filter(is_reference_lab=False)
    vendor = read_choice(request.GET, "vendor", tuple(vendors.values_list("slug", flat=True)), errors)
    query = read_search(request.GET, "q", errors)
    page = read_paginated_page(Paginator(_queue_submissions(states, vendor, query), QUEUE_PAGE_SIZE), request.GET, errors)
    counts = dict(Submission.objects.values_list("state").annotate(count=Count("pk")))
    context = {
        "page": page, "states": states, "vendor": vendor, "query": query, "vendors": vendors,
        "state_choices": Submission.State.choices, "counts": counts, "errors": errors,
        "query_string": urlencode([("state", state) for state in states] + [("vendor", vendor), ("q", query)]),
    }
    return render(request, "submissions/queue.html", context, status=response_status(errors))


def _queue_submissions(states: list[str], vendor: str, query: str):
    submissions = Submission.objects.filter(state__in=states).select_related("vendor", "card", "rule_pack")
    if vendor:
        submissions = submissions.filter(vendor__slug=vendor)
    if query:
        match = Q(sha256__startswith=query.lower()) | Q(original_name__icontains=query)
        submissions = submissions.filter(match | Q(pk=int(query)) if query.isdigit() else match)
    return submissions


@reviewer_required
@require_POST
def submission_revalidate(request, pk):
    submission = get_object_or_404(Submission, pk=pk)
    try:
        request_revalidation(submission.pk, actor=request.user, remote_addr=request.META.get("REMOTE_ADDR"))
    except SubmissionError as error:
        logger.info("submission %s not validated again by %s: %s", submission.pk, request.user.get_username(), error.code)
        messages.error(request, f"{error.detail} [{error.code}]")
    else:
        messages.success(request, _("Submission %(number)s is queued for validation again.") % {"number": submission.pk})
    return redirect("submission-detail", pk=submission.pk)
