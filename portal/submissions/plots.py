"""SVG plots of a validation report, drawn with matplotlib from the bundle's records and the verdict's details.

Two halves:

- `extract_series` runs in the pipeline on the verified bundles and keeps,
  per workload, the vendor's and the reference's loss by step, the vendor's
  throughput by step, and for inference workloads the per-request times to
  first token by load level, from requests.jsonl (stored in
  ValidationReport.series);
- renderers, registered by metric name with `@plot("<metric>")`, draw one
  criterion from its verdict entry and those series.

Adding a plot for another metric is one registered function here.
"""

from __future__ import annotations

import io
import math
import threading
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
    """Return {workload: {"loss": [[step, loss]], "reference_loss": [...], "throughput": [[step, tokens/s/card]]}}.

    Inference workloads get {"ttft": {level: {"seconds": [...], "failed": n}}, "reference_ttft": {...}} as well.
    """
    series = {}
    for workload_id in _workload_ids(bundle, "steps.jsonl"):
        rows = _step_rows(bundle, workload_id)
        if not rows:
            continue
        reference_rows = next((found for found in (_step_rows(ref, workload_id) for ref in references) if found), [])
        series[workload_id] = {
            "loss": _thin([[row["step"], row.get("loss")] for row in rows]),
            "reference_loss": _thin([[row["step"], row.get("loss")] for row in reference_rows]),
            "throughput": _thin([[row["step"], row.get("tokens_per_second_per_card")] for row in rows]),
        }
    for workload_id in _workload_ids(bundle, "requests.jsonl"):
        reference_levels = next((found for found in (_ttft_by_level(ref, workload_id) for ref in references) if found), {})
        series.setdefault(workload_id, {}).update({"ttft": _ttft_by_level(bundle, workload_id), "reference_ttft": reference_levels})
    return series


def _workload_ids(bundle, record_name: str) -> list[str]:
    return sorted({path.split("/")[1] for path in bundle.paths() if path.startswith("workloads/") and path.endswith(f"/{record_name}")})


def _ttft_by_level(bundle, workload_id: str) -> dict[str, dict]:
    """Return {level: {"seconds": sorted finite TTFTs, "failed": requests without a first token}} of the measured requests.

    The level of a request is its trial's level in search.json; warm-up
    requests are left out, as `certification.latency.summarize_trial` does.
    """
    from certification.latency import time_to_first_token

    requests_path, search_path = f"workloads/{workload_id}/requests.jsonl", f"workloads/{workload_id}/search.json"
    if not (bundle.has(requests_path) and bundle.has(search_path)):
        return {}
    trials = (bundle.read_json(search_path) or {}).get("trials") or []
    level_of = {int(trial["trial"]): f"{float(trial['level']):g}" for trial in trials if isinstance(trial, dict) and "trial" in trial and "level" in trial}
    levels: dict[str, dict] = {}
    for row in bundle.iter_jsonl(requests_path):
        level = level_of.get(int(row.get("trial", -1)))
        if level is None or row.get("warmup"):
            continue
        entry = levels.setdefault(level, {"seconds": [], "failed": 0})
        seconds = time_to_first_token(row)
        if math.isfinite(seconds):
            entry["seconds"].append(round(seconds, 6))
        else:
            entry["failed"] += 1
    for entry in levels.values():
        entry["seconds"] = _thin_sorted(sorted(entry["seconds"]))
    return levels


def _thin_sorted(values: list[float]) -> list[float]:
    """Keep at most MAX_POINTS evenly spaced values of a sorted list, always with its maximum, so the tail stays visible."""
    stride = max(1, math.ceil(len(values) / MAX_POINTS))
    thinned = values[::stride]
    if values and thinned[-1] != values[-1]:
        thinned.append(values[-1])
    return thinned


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


RENDER_LOCK = threading.Lock()


def render_svg(criterion: dict, series: dict, settings: dict) -> bytes:
    """Draw one criterion as an SVG document; text stays text so the browser's CJK fonts render it."""
    import matplotlib
    from matplotlib.figure import Figure

    # rc_context saves and restores the process-wide rcParams, so two threads inside it at once would leave one's
    # settings behind for every later plot of the process. The lock lets one thread render at a time.
    with RENDER_LOCK, matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9, "font.family": plot_font_families()}):
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


@plot("qps_per_tflops_ratio")
def time_to_first_token(criterion: dict, series: dict, settings: dict, figure) -> None:
    """Histogram of the per-request time to first token at the vendor's chosen load, the reference's beside it, with the limit and the percentile."""
    from matplotlib.ticker import MaxNLocator

    axes = figure.subplots()
    inference = settings.get("inference", {})
    limit, percentile = inference.get("time_to_first_token_max_seconds"), float(inference.get("time_to_first_token_percentile", 99))
    details = criterion.get("details") or {}
    sides = [
        (_("vendor"), VENDOR_COLOUR, series.get("ttft") or {}, _chosen_level(details.get("vendor"), series.get("ttft") or {})),
        (_("reference"), REFERENCE_COLOUR, series.get("reference_ttft") or {}, (details.get("reference") or {}).get("level")),
    ]
    drawn = []
    for label, colour, levels, level in sides:
        entry = levels.get(f"{float(level):g}") if level is not None else None
        if entry and (entry["seconds"] or entry["failed"]):
            drawn.append((label, colour, level, entry))
    if not drawn:
        axes.text(0.5, 0.5, _("No per-request time to first token was recorded at the chosen load."), ha="center", va="center", transform=axes.transAxes)
    _ttft_histograms(axes, drawn, percentile)
    if isinstance(limit, (int, float)):
        axes.axvline(limit, color=BOUND_COLOUR, linestyle="--", label=_("limit %(limit)s s") % {"limit": f"{limit:g}"})
    axes.set_xlabel(_("time to first token (s)"))
    axes.set_ylabel(_("requests"))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(_("%(id)s: time to first token at the chosen load") % {"id": criterion.get("id")})
    if drawn or isinstance(limit, (int, float)):
        axes.legend(loc="upper right")


def _chosen_level(vendor_details: dict | None, levels: dict) -> float | None:
    """Return the vendor's confirmed load level; without one, the lowest level tried."""
    level = (vendor_details or {}).get("level")
    if level is not None:
        return level
    return min((float(key) for key in levels), default=None)


def _ttft_histograms(axes, drawn: list, percentile: float) -> None:
    from certification.latency import nearest_rank

    values = [value for _label, _colour, _level, entry in drawn for value in entry["seconds"]]
    bins = _shared_bins(values)
    for label, colour, level, entry in drawn:
        name = _("%(side)s at load %(level)s, %(count)s requests") % {"side": label, "level": f"{float(level):g}", "count": len(entry["seconds"]) + entry["failed"]}
        if entry["seconds"]:
            axes.hist(entry["seconds"], bins=bins, color=colour, alpha=0.45, label=name)
        rank_value = nearest_rank(entry["seconds"] + [math.inf] * entry["failed"], percentile)
        if math.isfinite(rank_value):
            axes.axvline(rank_value, color=colour, linestyle=":", label=_("%(side)s p%(percentile)s %(seconds)s s") % {
                "side": label, "percentile": f"{percentile:g}", "seconds": f"{rank_value:.3f}"})
        elif not math.isnan(rank_value):
            axes.plot([], [], " ", label=_("%(side)s p%(percentile)s: a request without a first token") % {"side": label, "percentile": f"{percentile:g}"})
        if entry["failed"]:
            axes.plot([], [], " ", label=_("%(side)s: %(count)s requests without a first token") % {"side": label, "count": entry["failed"]})


def _shared_bins(values: list[float]) -> list[float]:
    if not values:
        return [0.0, 1.0]
    low, high = min(values), max(values)
    width = (high - low) / 40 or max(high, 1e-3) / 40
    return [low + index * width for index in range(41)]
