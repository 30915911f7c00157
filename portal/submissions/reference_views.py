"""The staff administrators' page for reference bundles: list them per rule pack and upload new ones."""

import logging

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from portal.permissions import administrator_required
from portal.registry.forms import DATA_TYPES
from portal.submissions.errors import SubmissionError
from portal.submissions.models import ReferenceBundle, RulePack
from portal.submissions.services import add_reference, ensure_tar

logger = logging.getLogger(__name__)


class ReferenceForm(forms.Form):
    rule_pack = forms.ModelChoiceField(label=gettext_lazy("Rule pack"), queryset=RulePack.objects.all())
    bundle = forms.FileField(label=gettext_lazy("Reference bundle (.tar)"), help_text=gettext_lazy("signed with a key of the reference lab"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for data_type in DATA_TYPES:
            self.fields[f"peak_{data_type}"] = forms.FloatField(
                label=gettext_lazy("Reference card peak dense TFLOPS, %(type)s") % {"type": data_type}, min_value=0.001, required=False
            )

    def peaks(self) -> dict[str, float]:
        return {data_type: self.cleaned_data[f"peak_{data_type}"] for data_type in DATA_TYPES if self.cleaned_data.get(f"peak_{data_type}")}


@administrator_required
@require_http_methods(["GET", "POST"])
def reference_list(request):
    form = ReferenceForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            reference, created = _add(request, form)
        except SubmissionError as error:
            logger.info("reference upload by %s refused: %s", request.user.get_username(), error.code)
            form.add_error(None, f"{error.detail} [{error.code}]")
        else:
            text = _("Reference %(label)s added to %(pack)s.") if created else _("This reference of %(pack)s was already stored.")
            messages.success(request, text % {"label": reference.label, "pack": reference.rule_pack.name})
            return redirect("reference-list")
    references = ReferenceBundle.objects.select_related("rule_pack", "created_by")
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "submissions/references.html", {"form": form, "references": references}, status=status)


def _add(request, form):
    upload = form.cleaned_data["bundle"]
    ensure_tar(upload)
    if not form.peaks():
        raise SubmissionError("reference_peaks_missing")
    return add_reference(
        upload.temporary_file_path(), rule_pack=form.cleaned_data["rule_pack"], peak_tflops=form.peaks(),
        actor=request.user, remote_addr=request.META.get("REMOTE_ADDR"),
    )
