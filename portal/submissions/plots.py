"""SVG plots of a validation report, drawn with matplotlib from the bundle's records and the verdict's details.

Two halves:

- `extract_series` runs in the pipeline on the verified bundles and keeps,
  per workload, the vendor's and the reference's loss by step and the
  vendor's throughput by step (stored in ValidationReport.series);
- renderers, registered by metric name with `@plot("<metric>")`, draw one
  criterion from its verdict entry and those series.

Adding a plot for another metric is one registered function here. The TTFT
distribution at the chosen rate is such a hook: once the inference workload
records per-request first-token latencies, `extract_series` keeps them and a
`@plot("<its metric name>")` function draws the histogram with the limit.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from collections.abc import Callable

from django.utils.translation import gettext as _

MAX_POINTS = 4000
RENDERERS: dict[str, Callable] = {}

VENDOR_COLOUR, REFERENCE_COLOUR, BOUND_COLOUR = "#c0392b", "#2c3e50", "#7f8c8d"


def plot(metric_name: str) -> Callable:
    """Register a renderer: fn(criterion: dict, series: dict, settings: dict, figure) draws on the matplotlib figure."""

    def decorator(function: Callable) -> Callable:
        RENDERERS[metric_name] = function
        return function

    return decorator


# Series from the records ----------------------------------------------------

def extract_series(bundle, references) -> dict:
    """Return {workload: {"loss": [[step, loss]], "reference_loss": [...], "throughput": [[step, tokens/s/card]]}}."""
    series = {}
    for workload_id in _workload_ids(bundle):
        rows = _step_rows(bundle, workload_id)
        if not rows:
            continue
        reference_rows = next((found for found in (_step_rows(ref, workload_id) for ref in references) if found), [])
        series[workload_id] = {
            "loss": _thin([[row["step"], row.get("loss")] for row in rows]),
            "reference_loss": _thin([[row["step"], row.get("loss")] for row in reference_rows]),
            "throughput": _thin([[row["step"], row.get("tokens_per_second_per_card")] for row in rows]),
        }
    return series


def _workload_ids(bundle) -> list[str]:
    return sorted({path.split("/")[1] for path in bundle.paths() if path.startswith("workloads/") and path.endswith("/steps.jsonl")})


def _step_rows(bundle, workload_id: str) -> list[dict]:
    from certification.records import decode_float

    path = f"workloads/{workload_id}/steps.jsonl"
    if not bundle.has(path):
        return []
    rows = [row for row in bundle.iter_jsonl(path) if isinstance(row.get("step"), int)]
    for row in rows:
        for key in ("loss", "tokens_per_second_per_card"):
            value = decode_float(row.get(key))
            row[key] = value if value is not None and math.isfinite(value) else None
    return sorted(rows, key=lambda row: row["step"])


def _thin(points: list[list]) -> list[list]:
    """Keep at most MAX_POINTS points, evenly spaced, so a long run stays a small JSON value."""
    points = [point for point in points if point[1] is not None]
    stride = max(1, math.ceil(len(points) / MAX_POINTS))
    return points[::stride]


# Rendering ------------------------------------------------------------------

def plottable(criterion: dict) -> bool:
    return criterion.get("metric") in RENDERERS and criterion.get("status") not in ("not_applicable",)


def plot_font_families() -> list[str]:
    """Register the shipped CJK font with matplotlib once, so Chinese labels are measured with real glyphs."""
    from django.conf import settings
    from matplotlib import font_manager

    path = Path(settings.BASE_DIR) / "static" / "fonts" / "wqy-microhei.ttf"
    if path.is_file() and not any(entry.fname == str(path) for entry in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(str(path))
    return ["DejaVu Sans", "WenQuanYi Micro Hei"]


def render_svg(criterion: dict, series: dict, settings: dict) -> bytes:
    """Draw one criterion as an SVG document; text stays text so the browser's CJK fonts render it."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9, "font.family": plot_font_families()}):
        figure = Figure(figsize=(7.5, 4.2), layout="constrained")
        RENDERERS[criterion["metric"]](criterion, series.get(criterion.get("workload"), {}), settings, figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg")
    return buffer.getvalue()


def _columns(points: list[list]) -> tuple[list, list]:
    return [point[0] for point in points], [point[1] for point in points]


@plot("loss_window_alignment")
def loss_alignment(criterion: dict, series: dict, settings: dict, figure) -> None:
    """Loss curves over the reference's, then each window's relative error against the bounds."""
    curves, errors_axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    loss = settings.get("loss_alignment", {})
    window = int(loss.get("window", 20))
    for points, label, colour in ((series.get("reference_loss", []), _("reference"), REFERENCE_COLOUR), (series.get("loss", []), _("vendor"), VENDOR_COLOUR)):
        if points:
            curves.plot(*_columns(points), color=colour, linewidth=0.8, alpha=0.6, label=label)
    details = criterion.get("details") or {}
    for means, colour in ((details.get("reference_window_means", []), REFERENCE_COLOUR), (details.get("vendor_window_means", []), VENDOR_COLOUR)):
        for index, mean in enumerate(means):
            if mean is not None:
                curves.hlines(mean, index * window + 1, (index + 1) * window, color=colour, linewidth=2)
    curves.set_ylabel(_("loss"))
    curves.set_title(_("%(id)s: loss and %(window)s-step window means") % {"id": criterion.get("id"), "window": window})
    curves.legend(loc="upper right")
    _window_errors(errors_axes, details.get("relative_errors", []), window, criterion.get("bound") or {})


def _window_errors(axes, errors: list, window: int, bound: dict) -> None:
    centres = [index * window + window / 2 + 0.5 for index in range(len(errors))]
    values = [100 * value if value is not None else math.nan for value in errors]
    axes.bar(centres, values, width=window * 0.8, color=VENDOR_COLOUR, alpha=0.7, label=_("relative error per window"))
    if isinstance(bound, dict) and bound.get("max_relative_error_max") is not None:
        axes.axhline(100 * bound["max_relative_error_max"], color=BOUND_COLOUR, linestyle="--", label=_("bound for each window"))
    if isinstance(bound, dict) and bound.get("mean_relative_error_max") is not None:
        axes.axhline(100 * bound["mean_relative_error_max"], color=BOUND_COLOUR, linestyle=":", label=_("bound for the mean"))
    axes.set_xlabel(_("step"))
    axes.set_ylabel(_("relative error (%)"))
    axes.legend(loc="upper right")


@plot("throughput_ratio")
def throughput(criterion: dict, series: dict, settings: dict, figure) -> None:
    """Tokens per second per card at every step, with the steps the mean is taken over."""
    axes = figure.subplots()
    points = series.get("throughput", [])
    if points:
        axes.plot(*_columns(points), color=VENDOR_COLOUR, linewidth=0.8, label=_("vendor"))
    first, last = (settings.get("throughput", {}).get("mean_steps") or [None, None])[:2]
    if first is not None:
        axes.axvspan(first, last, color=BOUND_COLOUR, alpha=0.12, label=_("steps of the mean"))
    details = criterion.get("details") or {}
    mean = ((details.get("vendor") or {}).get("tokens_per_second_per_card") or {}).get("mean")
    if mean is not None:
        axes.axhline(mean, color=VENDOR_COLOUR, linestyle="--", label=_("mean"))
    axes.set_xlabel(_("step"))
    axes.set_ylabel(_("tokens per second per card"))
    axes.set_title(_("%(id)s: throughput over steps") % {"id": criterion.get("id")})
    axes.legend(loc="lower right")


def _differences(axes, rows: list[tuple[str, float, list]], bound: float | None, unit: str) -> None:
    """One horizontal interval per row: the difference with its 95% confidence interval, and the bound."""
    for position, (label, difference, interval) in enumerate(rows):
        low, high = (interval or [difference, difference])[:2]
        axes.errorbar([difference], [position], xerr=[[difference - low], [high - difference]], fmt="o", color=VENDOR_COLOUR, capsize=4)
    axes.set_yticks(range(len(rows)), [row[0] for row in rows])
    axes.axvline(0, color=REFERENCE_COLOUR, linewidth=0.8)
    if isinstance(bound, (int, float)):
        for side in (-bound, bound):
            axes.axvline(side, color=BOUND_COLOUR, linestyle="--")
    axes.set_xlabel(_("vendor minus reference (%(unit)s), with the 95%% confidence interval") % {"unit": unit})
    axes.set_ylim(-0.8, len(rows) - 0.2)


@plot("lambada_accuracy_difference")
def lambada(criterion: dict, series: dict, settings: dict, figure) -> None:
    axes = figure.subplots()
    details = criterion.get("details") or {}
    measured, reference = criterion.get("measured"), criterion.get("reference")
    difference = 100 * (measured - reference) if isinstance(measured, (int, float)) and isinstance(reference, (int, float)) else 0.0
    _differences(axes, [("LAMBADA", difference, details.get("difference_ci95"))], None, _("accuracy points"))
    axes.set_title(_("%(id)s: LAMBADA accuracy difference") % {"id": criterion.get("id")})


@plot("rouge_difference")
def rouge(criterion: dict, series: dict, settings: dict, figure) -> None:
    axes = figure.subplots()
    details = criterion.get("details") or {}
    intervals = details.get("difference_ci95") or {}
    rows = [(variant, value, intervals.get(variant)) for variant, value in (details.get("differences") or {}).items()]
    _differences(axes, rows, criterion.get("bound"), _("ROUGE points"))
    axes.set_title(_("%(id)s: ROUGE differences") % {"id": criterion.get("id")})
