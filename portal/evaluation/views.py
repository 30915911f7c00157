"""Staff pages of human evaluation: the queue, the reviewer page, adjudication and sign-off."""

import logging

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from portal.evaluation.errors import EvaluationError
from portal.evaluation.models import EvaluationSet, Judgement, Pair
from portal.evaluation.services import adjudicate, build_sets, missing_sets, record_judgement, reviewer_progress, sign_off, tally
from portal.permissions import staff_required
from portal.submissions.models import Submission

logger = logging.getLogger(__name__)


def _show_error(request, error: EvaluationError, action: str) -> None:
    logger.info("%s by %s rejected: %s", action, request.user.get_username(), error.code)
    messages.error(request, f"{error.detail} [{error.code}]")


@staff_required
def evaluation_index(request):
    judged = Submission.objects.filter(state=Submission.State.JUDGED).select_related("vendor", "card", "rule_pack", "report").order_by("-created_at")
    # Pairs are built automatically after each verdict; a submission is listed while some of its sets are missing.
    waiting = [(item, missing) for item in judged if (missing := missing_sets(item))]
    sets = EvaluationSet.objects.select_related("submission__card__vendor").order_by("-created_at")
    return render(request, "evaluation/index.html", {"waiting": waiting, "sets": sets})


@staff_required
@require_POST
def build_pairs(request, submission_pk):
    submission = get_object_or_404(Submission, pk=submission_pk)
    try:
        sets = build_sets(submission, actor=request.user)
    except EvaluationError as error:
        _show_error(request, error, f"building pairs of submission {submission_pk}")
        return redirect("evaluation-index")
    return redirect("evaluation-set", set_pk=sets[0].pk)


@staff_required
def set_detail(request, set_pk):
    evaluation_set = get_object_or_404(EvaluationSet.objects.select_related("submission__card__vendor", "submission__rule_pack"), pk=set_pk)
    context = {
        "set": evaluation_set, "tally": tally(evaluation_set), "progress": reviewer_progress(evaluation_set, request.user),
        "identical": evaluation_set.pairs.filter(identical=True), "sign_offs": evaluation_set.sign_offs.all(),
        "current": evaluation_set.current_sign_off(), "reviewers": _reviewer_counts(evaluation_set),
    }
    return render(request, "evaluation/set.html", context)


def _reviewer_counts(evaluation_set: EvaluationSet) -> list[tuple[str, int]]:
    counts = {}
    for name in Judgement.objects.filter(pair__evaluation_set=evaluation_set).values_list("reviewer__username", flat=True):
        counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items())


@staff_required
def review(request, set_pk):
    """Show one pair to judge: the one asked for, else the first this reviewer has not judged yet."""
    evaluation_set = get_object_or_404(EvaluationSet, pk=set_pk)
    progress = reviewer_progress(evaluation_set, request.user)
    positions = list(evaluation_set.pairs.filter(identical=False).values_list("position", flat=True))
    requested = request.GET.get("position", "")
    position = int(requested) if requested.isdigit() and int(requested) in positions else (progress.resume_at or (positions[0] if positions else None))
    if position is None:
        return redirect("evaluation-set", set_pk=set_pk)

    pair = evaluation_set.pairs.get(position=position)
    mine = pair.judgements.filter(reviewer=request.user).first()
    index = positions.index(position)
    context = {
        "set": evaluation_set, "pair": pair, "progress": progress, "index": index + 1, "count": len(positions),
        "current": pair.to_vendor_view(mine.outcome) if mine else None,
        "previous": positions[index - 1] if index > 0 else None, "next": positions[index + 1] if index + 1 < len(positions) else None,
        "closed": evaluation_set.current_sign_off() is not None,
    }
    return render(request, "evaluation/review.html", context)


@staff_required
@require_POST
def judge_pair(request, set_pk, position):
    pair = get_object_or_404(Pair, evaluation_set_id=set_pk, position=position)
    try:
        record_judgement(pair, request.user, request.POST.get("judgement", ""))
    except EvaluationError as error:
        _show_error(request, error, f"judgement of pair {position} in set {set_pk}")
        return redirect(f"{reverse('evaluation-review', args=[set_pk])}?position={position}")
    following = reviewer_progress(pair.evaluation_set, request.user).resume_at
    if following is None:
        messages.success(request, gettext("You judged every pair of this set."))
        return redirect("evaluation-set", set_pk=set_pk)
    return redirect(f"{reverse('evaluation-review', args=[set_pk])}?position={following}")


@staff_required
@require_POST
def adjudicate_pair(request, set_pk, position):
    pair = get_object_or_404(Pair, evaluation_set_id=set_pk, position=position)
    try:
        adjudicate(pair, outcome=request.POST.get("outcome", ""), decided_by=request.user, note=request.POST.get("note", ""))
    except EvaluationError as error:
        _show_error(request, error, f"adjudication of pair {position} in set {set_pk}")
    return redirect("evaluation-set", set_pk=set_pk)


@staff_required
@require_POST
def sign_off_set(request, set_pk):
    evaluation_set = get_object_or_404(EvaluationSet, pk=set_pk)
    try:
        sign_off(evaluation_set, signer=request.user, password=request.POST.get("password", ""),
                 statement=request.POST.get("statement", ""), remote_addr=request.META.get("REMOTE_ADDR"))
    except EvaluationError as error:
        _show_error(request, error, f"sign-off of set {set_pk}")
    return redirect("evaluation-set", set_pk=set_pk)
