"""Key figures of a certificate, formatted for people: units and sensible rounding per metric."""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any, digits: int = 3) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—" if value is None else str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{digits}g}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"


def _percent(value: Any, decimals: int = 2) -> str:
    return f"{value * 100:.{decimals}f} %" if isinstance(value, (int, float)) else _number(value)


def _points(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else _number(value)


def _loss_alignment(item: dict) -> dict:
    measured, bound = item.get("measured") or {}, item.get("bound") or {}
    return {
        "measured": f"mean {_percent(measured.get('mean_relative_error'))}, max {_percent(measured.get('max_relative_error'))}",
        "reference": "—",
        "bound": f"mean ≤ {_percent(bound.get('mean_relative_error_max'))}, max ≤ {_percent(bound.get('max_relative_error_max'))}",
    }


def _validation_loss(item: dict) -> dict:
    return {"measured": f"{item.get('measured', 0):.4f}", "reference": f"{item.get('reference', 0):.4f}", "bound": f"|Δ| ≤ {item.get('bound')}"}


def _accuracy(item: dict) -> dict:
    return {"measured": f"{_points(item.get('measured'))} %", "reference": f"{_points(item.get('reference'))} %", "bound": f"|Δ| ≤ {item.get('bound')} pt"}


def _rouge(item: dict) -> dict:
    measured, reference = item.get("measured") or {}, item.get("reference") or {}
    return {
        "measured": ", ".join(f"{name} {_points(value)}" for name, value in measured.items()),
        "reference": ", ".join(f"{name} {_points(value)}" for name, value in reference.items()) if isinstance(reference, dict) else _number(reference),
        "bound": f"|Δ| ≤ {item.get('bound')} pt",
    }


def _throughput(item: dict) -> dict:
    measured, reference = item.get("measured"), item.get("reference")
    ratio = measured / reference if isinstance(measured, (int, float)) and reference else None
    return {
        "measured": f"{_number(measured)} tokens/s/TFLOPS ({_percent(ratio, 1)} of reference)",
        "reference": f"{_number(reference)} tokens/s/TFLOPS",
        "bound": f"≥ {_percent(item.get('bound'), 0)} of reference",
    }


def _human(item: dict) -> dict:
    bound = item.get("bound") or {}
    pairs = (item.get("details") or {}).get("pairs")
    return {
        "measured": f"GSB {item.get('measured', 0) * 100:+.1f} % ({pairs} pairs)",
        "reference": "—",
        "bound": f"GSB ≥ {bound.get('gsb_min', 0) * 100:+.0f} %, ≥ {bound.get('min_pairs')} pairs, sign test α = {bound.get('alpha')}",
    }


FORMATTERS = {
    "loss_window_alignment": _loss_alignment,
    "validation_loss_difference": _validation_loss,
    "lambada_accuracy_difference": _accuracy,
    "rouge_difference": _rouge,
    "throughput_ratio": _throughput,
    "human_gsb": _human,
}


def format_figure(item: dict) -> dict:
    """Return the criterion id with its measured value, reference and bound as short strings with units."""
    formatter = FORMATTERS.get(item.get("metric"))
    try:
        text = formatter(item) if formatter else {key: _number(item.get(key)) for key in ("measured", "reference", "bound")}
    except (TypeError, ValueError, AttributeError):
        text = {key: str(item.get(key)) for key in ("measured", "reference", "bound")}
    return {"id": item.get("id"), "metric": item.get("metric"), **text}
