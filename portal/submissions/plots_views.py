"""The SVG plots on a submission's validation report."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.cache import cache_control

from portal.submissions import plots
from portal.submissions.models import Submission


@login_required
@cache_control(private=True, max_age=3600)
def submission_plot(request, pk, index):
    submission = get_object_or_404(Submission.objects.select_related("vendor", "rule_pack"), pk=pk)
    report = getattr(submission, "report", None)
    if not submission.is_visible_to(request.user) or report is None:
        raise Http404
    criteria = report.criteria
    if not 0 <= index < len(criteria) or not plots.plottable(criteria[index]):
        raise Http404
    settings = submission.rule_pack.parsed().data.get("settings", {}) if submission.rule_pack else {}
    return HttpResponse(plots.render_svg(criteria[index], report.series, settings), content_type="image/svg+xml")
