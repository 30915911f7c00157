"""Template filters for verdict reports and certificates."""

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy, pgettext

from portal.certificates.models import LEVEL_NUMERALS, Track

register = template.Library()


@register.simple_tag
def label_colon() -> str:
    """Return the separator between a label and its value: ": " in English, the full-width "：" in Chinese."""
    return pgettext("separator after a label", ": ")

STATUS_LABELS = {
    "pass": _("pass"),
    "fail": _("fail"),
    "pending": _("pending"),
    "not_applicable": _("not applicable"),
    "refused": _("refused"),
}

# The relation of an input's digests in the verdict's `inputs` (certification.inputs), as the report shows it.
INPUT_STATUS_LABELS = {
    "equal": _("yes"),
    "different": _("no: the digests differ"),
    "off_pin": _("no: both differ from the rule pack"),
    "vendor_only": _("no: not recorded by the reference run"),
    "reference_only": _("no: not recorded by the vendor run"),
    "not_recorded": _("no: recorded by neither run"),
}
INPUT_KIND_LABELS = {
    "dataset": _("data set"),
    "corpus": _("pre-tokenized corpus"),
    "tokenizer": _("tokenizer"),
    "checkpoint": _("checkpoint"),
}


# Verdict values that are a count of something, as {key: count}: the loss alignment's reference is the number of window means it compares.
COUNT_LABELS = {
    "window_means": ngettext_lazy("%(count)s window mean", "%(count)s window means", "count"),
}


@register.filter
def track_label(track: str) -> str:
    return Track(track).label if track in Track.values else track


@register.filter
def level_numeral(level) -> str:
    return LEVEL_NUMERALS.get(int(level or 0), "—")


@register.filter
def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


@register.filter
def input_status_label(status: str) -> str:
    return INPUT_STATUS_LABELS.get(status, status)


@register.filter
def input_kind_label(kind: str) -> str:
    return INPUT_KIND_LABELS.get(kind, kind)


@register.filter
def localized(text, language_code: str) -> str:
    """Pick the Chinese or English side of a {"zh", "en"} text from the verdict."""
    if not isinstance(text, dict):
        return "" if text is None else str(text)
    key = "zh" if str(language_code).startswith("zh") else "en"
    return text.get(key) or text.get("en") or text.get("zh") or ""


@register.filter
def figure(value) -> str:
    """Format a number from the verdict with four significant digits; other values as text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in COUNT_LABELS:
        key, count = next(iter(value.items()))
        return COUNT_LABELS[key] % {"count": count}
    if isinstance(value, dict):
        return ", ".join(f"{key}: {figure(item)}" for key, item in value.items())
    return str(value)


TRACK_NAMES = {
    "finetuning": ("调优", "Fine-tuning"),
    "pretraining": ("预训练", "Pretraining"),
    "inference": ("推理", "Inference"),
    "dpo": ("DPO", "DPO"),
}


@register.filter
def track_zh(track: str) -> str:
    return TRACK_NAMES.get(track, (track, track))[0]


@register.filter
def track_en(track: str) -> str:
    return TRACK_NAMES.get(track, (track, track))[1]


@register.filter
def get_item(mapping, key):
    """Look a key up in a dict from a template: {{ counts|get_item:state }}."""
    return mapping.get(key) if isinstance(mapping, dict) else None


# A quantity of the certificate figures: a number and its unit joined by a no-break space, such as 662 tokens/s/TFLOPS.
# Brackets and commas beside it stay outside, so that Chinese text after a unit can still wrap.
QUANTITY = re.compile(r"[^\s()（）,，]+\u00a0[^\s()（）,，]+")


@register.filter
def keep_quantities(text) -> str:
    """Escape the text and wrap each quantity in a span that the PDF's stylesheet keeps on one line."""
    escaped = escape("" if text is None else str(text))
    return mark_safe(QUANTITY.sub(lambda match: f'<span class="quantity">{match.group(0)}</span>', escaped))
