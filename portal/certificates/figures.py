"""Key figures of a certificate, formatted for people: units and sensible rounding per metric.

A certificate stores each passing criterion's raw figures under `values`
(measured, reference, bound and the few details the text needs) next to the
English text. Pages and the PDF format `values` again in the reader's
language; certificates issued before `values` existed show their stored text.
"""

from __future__ import annotations

import math
from typing import Any

from django.utils import translation
from django.utils.translation import gettext as _

# Details of a verdict item that the formatted text uses; the rest is left out of the certificate.
KEPT_DETAILS = ("pairs", "ratio", "data_type", "peak_data_type")
# Joins a number to its unit. The PDF also keeps the whole quantity around it on one line (`keep_quantities`),
# so that tokens/s/TFLOPS does not break at a slash in a narrow table cell.
NO_BREAK_SPACE = "\u00a0"


def _number(value: Any, digits: int = 3) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—" if value is None else str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{digits}g}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"


def _percent(value: Any, decimals: int = 2) -> str:
    return f"{value * 100:.{decimals}f}{NO_BREAK_SPACE}%" if isinstance(value, (int, float)) else _number(value)


def _quantity(number: str, unit: str) -> str:
    return f"{number}{NO_BREAK_SPACE}{unit}"


def _points(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else _number(value)


def _loss_alignment(item: dict) -> dict:
    measured, bound = item.get("measured") or {}, item.get("bound") or {}
    return {
        "measured": _("mean %(mean)s, max %(max)s") % {"mean": _percent(measured.get("mean_relative_error")), "max": _percent(measured.get("max_relative_error"))},
        "reference": "—",
        "bound": _("mean ≤ %(mean)s, max ≤ %(max)s") % {"mean": _percent(bound.get("mean_relative_error_max")), "max": _percent(bound.get("max_relative_error_max"))},
    }


def _validation_loss(item: dict) -> dict:
    return {"measured": f"{item.get('measured', 0):.4f}", "reference": f"{item.get('reference', 0):.4f}", "bound": f"|Δ| ≤ {item.get('bound')}"}


def _accuracy(item: dict) -> dict:
    return {
        "measured": _quantity(_points(item.get("measured")), "%"), "reference": _quantity(_points(item.get("reference")), "%"),
        "bound": _("|Δ| ≤ %(bound)s pt") % {"bound": item.get("bound")},
    }


def _rouge(item: dict) -> dict:
    measured, reference = item.get("measured") or {}, item.get("reference") or {}
    return {
        "measured": ", ".join(f"{name} {_points(value)}" for name, value in measured.items()),
        "reference": ", ".join(f"{name} {_points(value)}" for name, value in reference.items()) if isinstance(reference, dict) else _number(reference),
        "bound": _("|Δ| ≤ %(bound)s pt") % {"bound": item.get("bound")},
    }


def _ratio(unit: str):
    """Return a formatter of a per-TFLOPS throughput compared with the reference's, in `unit`."""

    def format_ratio(item: dict) -> dict:
        measured, reference = item.get("measured"), item.get("reference")
        ratio = measured / reference if isinstance(measured, (int, float)) and reference else None
        return {
            "measured": _("%(quantity)s (%(ratio)s of the reference)") % {"quantity": _quantity(_number(measured), unit), "ratio": _percent(ratio, 1)},
            "reference": _quantity(_number(reference), unit),
            "bound": _("≥ %(bound)s of the reference") % {"bound": _percent(item.get("bound"), 0)},
        }

    return format_ratio


def _qps(item: dict) -> dict:
    text = _ratio("QPS/TFLOPS")(item)
    latency = (item.get("details") or {}).get("time_to_first_token") or {}
    if latency:
        text["bound"] += _(", at p%(percentile)s time to first token ≤ %(limit)s s") % latency
    return text


def _human(item: dict) -> dict:
    bound = item.get("bound") or {}
    pairs = (item.get("details") or {}).get("pairs")
    return {
        "measured": _("GSB %(gsb)s (%(pairs)s pairs)") % {"gsb": _quantity(f"{item.get('measured', 0) * 100:+.1f}", "%"), "pairs": pairs},
        "reference": "—",
        "bound": _("GSB ≥ %(gsb)s, at least %(pairs)s pairs, sign test α = %(alpha)s") % {
            "gsb": _quantity(f"{bound.get('gsb_min', 0) * 100:+.0f}", "%"), "pairs": bound.get("min_pairs"), "alpha": bound.get("alpha"),
        },
    }


def _stability(item: dict) -> dict:
    measured = item.get("measured") or {}
    if "warm_starts" in measured:
        text = _("%(count)s warm starts, %(failed)s failed") % {"count": measured.get("warm_starts"), "failed": measured.get("failed", 0)}
    else:
        text = _("no crash, %(days)s days without a crash") % {"days": _number(measured.get("crash_free_days"))}
    bound = item.get("bound") or {}
    limit = _("losses after a warm start within μ + max(%(sigma)sσ, %(margin)s μ)") % {
        "sigma": bound.get("sigma_multiple"), "margin": bound.get("relative_margin"),
    } if bound else "—"
    return {"measured": text, "reference": "—", "bound": limit}


FORMATTERS = {
    "loss_window_alignment": _loss_alignment,
    "sd_loss_alignment": _loss_alignment,
    "validation_loss_difference": _validation_loss,
    "lambada_accuracy_difference": _accuracy,
    "rouge_difference": _rouge,
    "throughput_ratio": _ratio("tokens/s/TFLOPS"),
    "qps_per_tflops_ratio": _qps,
    "images_per_second_ratio": _ratio("images/s/TFLOPS"),
    "human_gsb": _human,
    "sd_image_gsb": _human,
    "warm_start_stability": _stability,
}


def _generic(item: dict) -> dict:
    """Format a metric without its own formatter: numbers rounded, a dict as `key value` pairs."""

    def text(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{key} {_number(entry)}" for key, entry in value.items()) or "—"
        return _number(value)

    return {key: text(item.get(key)) for key in ("measured", "reference", "bound")}


def format_figure(item: dict) -> dict:
    """Return the criterion id with its measured value, reference and bound as short strings with units, in the active language."""
    formatter = FORMATTERS.get(item.get("metric"), _generic)
    try:
        text = formatter(item)
    except (TypeError, ValueError, AttributeError, KeyError):
        text = _generic(item)
    return {"id": item.get("id"), "metric": item.get("metric"), **text}


def stored_figure(item: dict, pack_settings: dict) -> dict:
    """Return what a certificate stores of a passing criterion: the English text and the raw values to format again."""
    details = {key: value for key, value in (item.get("details") or {}).items() if key in KEPT_DETAILS}
    if item.get("metric") == "qps_per_tflops_ratio":
        inference = pack_settings.get("inference", {})
        details["time_to_first_token"] = {
            "percentile": f"{float(inference.get('time_to_first_token_percentile', 99)):g}", "limit": inference.get("time_to_first_token_max_seconds"),
        }
    values = {"measured": item.get("measured"), "reference": item.get("reference"), "bound": item.get("bound"), "details": details}
    with translation.override("en"):
        text = format_figure({"id": item.get("id"), "metric": item.get("metric"), **values})
    return {**text, "values": values}


def display_figures(key_figures: list[dict]) -> list[dict]:
    """Format a certificate's key figures in the active language; old ones without raw values keep their text."""
    return [format_figure({"id": item.get("id"), "metric": item.get("metric"), **item["values"]}) if "values" in item else item for item in key_figures]
