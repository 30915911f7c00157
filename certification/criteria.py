"""Criterion evaluators: each turns the raw records of one workload into a status.

A rule pack names a criterion's `metric`; CRITERIA maps that name to the
function here that evaluates it. Every figure is recomputed from steps.jsonl,
validation.json, lambada.jsonl and predictions.jsonl; result.json summaries
are never read for a number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from certification import metrics
from certification.bundle import VerifiedBundle
from certification.errors import BundleError
from certification import records
from certification.records import RecordsInvalid, decode_float
from certification.verdict_messages import bundle_error_zh, render

PASS, FAIL, PENDING, NOT_APPLICABLE, REFUSED = "pass", "fail", "pending", "not_applicable", "refused"
CRITERIA: dict[str, Callable[[CriterionContext], Outcome]] = {}
# Metric names whose criteria are judged by people on blind pairs of outputs, each mapped to the
# settings section (such as "sd") whose own human_evaluation keys override the pack's, or None.
HUMAN_METRICS: dict[str, str | None] = {}
# The "step" key of one steps.jsonl line and its integer value.
STEP_KEY = re.compile(rb'"step"\s*:\s*(-?\d+)')


def step_loss(row: dict) -> float:
    """Return the loss of a steps.jsonl record, or raise RecordsInvalid for a record without one."""
    if row.get("loss") is None:
        raise RecordsInvalid(f"step {row.get('step')} has no loss", f"第 {row.get('step')} 步没有 loss")
    return decode_float(row["loss"])


@dataclass
class Outcome:
    """The result of one criterion before it is labelled with its id and workload."""

    status: str
    code: str
    measured: Any = None
    reference: Any = None
    bound: Any = None
    fields: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def messages(self) -> tuple[dict[str, str], dict[str, str]]:
        return render(self.code, **self.fields)


class WorkloadRecords:
    """The raw records of one workload in a verified bundle, parsed on first use."""

    def __init__(self, bundle: VerifiedBundle, workload_id: str):
        self.bundle = bundle
        self.workload_id = workload_id
        self.prefix = f"workloads/{workload_id}/"
        self._prefix_rows: dict[int, list[dict]] = {}

    def exists(self) -> bool:
        return workload_id_in(self.bundle, self.workload_id)

    def _json(self, name: str) -> Any:
        if not self.bundle.has(self.prefix + name):
            raise RecordsInvalid(f"{self.prefix}{name} is missing", f"缺少 {self.prefix}{name}")
        return self.bundle.read_json(self.prefix + name)

    def _jsonl(self, name: str) -> list[dict]:
        if not self.bundle.has(self.prefix + name):
            raise RecordsInvalid(f"{self.prefix}{name} is missing", f"缺少 {self.prefix}{name}")
        return list(self.bundle.iter_jsonl(self.prefix + name))

    @cached_property
    def config(self) -> dict:
        return self._json("config.json")

    @cached_property
    def result(self) -> dict:
        return self._json("result.json")

    def _jsonl_fast(self, name: str) -> list[dict]:
        """Parse a JSON-lines record in one call, so 100,000-line step logs take milliseconds, not seconds.

        The lines are joined into one JSON array; when that fails, the
        line-by-line reader runs to name the first invalid line.
        """
        if not self.bundle.has(self.prefix + name):
            raise RecordsInvalid(f"{self.prefix}{name} is missing", f"缺少 {self.prefix}{name}")
        lines = [line for line in self.bundle.read_bytes(self.prefix + name).splitlines() if line.strip()]
        try:
            rows = records.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            return list(self.bundle.iter_jsonl(self.prefix + name))
        if not all(isinstance(row, dict) for row in rows):
            raise RecordsInvalid(f"{self.prefix}{name} has a line that is not a JSON object",
                                 f"{self.prefix}{name} 中有一行不是 JSON 对象")
        return rows

    @cached_property
    def steps(self) -> list[dict]:
        rows = self._jsonl_fast("steps.jsonl")
        numbers = [row.get("step") for row in rows]
        if any(not isinstance(number, int) for number in numbers) or len(set(numbers)) != len(numbers):
            raise RecordsInvalid(f"{self.prefix}steps.jsonl has missing, non-integer or repeated step numbers",
                                 f"{self.prefix}steps.jsonl 的步数有缺失、不是整数或重复")
        return sorted(rows, key=lambda row: row["step"])

    @cached_property
    def losses(self) -> Mapping[int, float]:
        """Loss by step; looking up single steps reads single lines (see StepLosses)."""
        return StepLosses(self._steps_raw, lambda: {row["step"]: step_loss(row) for row in self.steps})

    # Step-log prefixes. A step log of 100,000 lines takes about half a second
    # to parse in full on one core, so the built-in criteria read only the
    # lines they compare when the log starts with steps 1, 2, 3 ... in order,
    # as the agent writes it, and fall back to the full parse otherwise.

    @cached_property
    def _steps_raw(self) -> bytes:
        if not self.bundle.has(self.prefix + "steps.jsonl"):
            raise RecordsInvalid(f"{self.prefix}steps.jsonl is missing", f"缺少 {self.prefix}steps.jsonl")
        return self.bundle.read_bytes(self.prefix + "steps.jsonl")

    def _first_lines(self, count: int) -> list[bytes]:
        """Return the first `count` lines of the step log without copying the rest of it."""
        if count <= 0:
            return []
        end = self.losses.line_end(count - 1)
        return self._steps_raw[:end if end is not None else len(self._steps_raw)].splitlines()

    def rows_through(self, last: int) -> list[dict]:
        """Return the step rows with step <= `last`, in step order, parsing only the first `last` lines when possible."""
        cached = self._prefix_rows.get(last)
        if cached is not None:
            return cached
        try:
            rows = records.loads(b"[" + b",".join(self._first_lines(last)) + b"]")
        except ValueError:
            rows = None
        if rows is None or not all(isinstance(row, dict) and row.get("step") == number for number, row in enumerate(rows, start=1)):
            rows = [row for row in self.steps if row["step"] <= last]
        self._prefix_rows[last] = rows
        return rows

    def step_numbers_through(self, last: int) -> set[int]:
        """Return the step numbers <= `last` that the log holds, reading only the step key of the first `last` lines when possible."""
        lines = self._first_lines(last)
        numbers = [int(match) for match in STEP_KEY.findall(b"\n".join(lines))]
        if len(numbers) == len(lines) and numbers == list(range(1, len(lines) + 1)):
            return set(numbers)
        return {row["step"] for row in self.steps if row["step"] <= last}

    def losses_through(self, last: int) -> dict[int, float]:
        """Return {step: loss} for steps 1..`last` that the log holds."""
        return {row["step"]: step_loss(row) for row in self.rows_through(last)}

    def non_finite_loss_steps(self) -> list[int]:
        """Return every step whose loss is NaN or infinite, anywhere in the log.

        Non-finite numbers can only be written as the strings "NaN",
        "Infinity" and "-Infinity", so a log without those bytes has none
        and needs no parse.
        """
        raw = self._steps_raw
        if b"NaN" not in raw and b"Infinity" not in raw:
            return []
        return sorted(step for step, loss in self.losses.items() if not math.isfinite(loss))

    @cached_property
    def validation(self) -> dict:
        return self._json("validation.json")

    @cached_property
    def lambada(self) -> list[dict]:
        return self._jsonl_fast("lambada.jsonl")

    @cached_property
    def predictions(self) -> list[dict]:
        return self._jsonl("predictions.jsonl")


class StepLosses(Mapping):
    """Loss by step number over a steps.jsonl log, read one line at a time while the log is in step order.

    The agent writes line i for step i. A lookup of step n parses line n only
    and checks that it contains step n. The first line that does not, and any
    iteration or len(), switch to a full parse of the log, which also rejects
    repeated steps. NOTE: a repeated step that lies past every line looked up
    is only found by a full parse, that is by iterating.
    """

    def __init__(self, raw: bytes, parse_all: Callable[[], dict[int, float]]):
        self._raw = raw
        self._parse_all = parse_all
        self._all: dict[int, float] | None = None
        self._line_ends: list[int] = []

    def _full(self) -> dict[int, float]:
        if self._all is None:
            self._all = self._parse_all()
        return self._all

    def line_end(self, index: int) -> int | None:
        """Return the offset of line `index`'s newline (or of the file's end), finding newlines only as far as needed."""
        ends = self._line_ends
        while len(ends) <= index:
            start = ends[-1] + 1 if ends else 0
            if start >= len(self._raw):
                return None
            found = self._raw.find(b"\n", start)
            ends.append(found if found >= 0 else len(self._raw))
        return ends[index]

    def line_count(self) -> int:
        """Return the number of lines, counting newlines in C rather than locating each one."""
        return self._raw.count(b"\n") + (0 if not self._raw or self._raw.endswith(b"\n") else 1)

    def _line(self, index: int) -> bytes | None:
        if index < 0:
            return None
        end = self.line_end(index)
        if end is None:
            return None
        start = self._line_ends[index - 1] + 1 if index else 0
        return self._raw[start:end]

    def __getitem__(self, step: int) -> float:
        if self._all is None and isinstance(step, int) and step >= 1:
            line = self._line(step - 1)
            if line is None and self._last_line_step() == self.line_count():
                raise KeyError(step)
            try:
                row = records.loads(line) if line is not None else None
            except ValueError:
                row = None
            if isinstance(row, dict) and row.get("step") == step:
                return step_loss(row)
        return self._full()[step]

    def _last_line_step(self) -> Any:
        """Return the step of the last line, so a lookup past the end raises KeyError without a full parse."""
        try:
            end = len(self._raw) - 1 if self._raw.endswith(b"\n") else len(self._raw)
            row = records.loads(self._raw[self._raw.rfind(b"\n", 0, end) + 1:end])
        except ValueError:
            return None
        return row.get("step") if isinstance(row, dict) else None

    def __iter__(self):
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())


def workload_id_in(bundle: VerifiedBundle, workload_id: str) -> bool:
    return workload_id in bundle.workloads()


@dataclass
class CriterionContext:
    """Everything an evaluator may read: the pack's settings, both sides' records and the peaks."""

    criterion: dict
    workload_id: str
    settings: dict
    vendor: WorkloadRecords
    reference: WorkloadRecords
    vendor_peaks: dict[str, float]
    reference_peaks: dict[str, float]
    throughput_bound: float | None
    human: dict | None


def criterion(metric_name: str, *, human: bool = False, settings_section: str | None = None) -> Callable:
    """Register the decorated evaluator under the rule pack metric name `metric_name`.

    `human=True` marks a metric whose result comes from people judging blind
    pairs; the portal builds those pairs for every criterion with such a
    metric. `settings_section` names the section of the pack's settings whose
    `human_evaluation` keys override the pack-wide ones for this metric.
    """

    def decorate(function: Callable) -> Callable:
        CRITERIA[metric_name] = function
        if human:
            HUMAN_METRICS[metric_name] = settings_section
        return function

    return decorate


def needs_human_evaluation(metric_name: str) -> bool:
    """Return True when criteria of `metric_name` wait for a signed-off human judgement."""
    return metric_name in HUMAN_METRICS


def human_pass_rule(pack_settings: dict, metric_name: str) -> dict:
    """Return the pass rule of a human metric: gsb_min, min_pairs and alpha, with the standard's defaults.

    The defaults are the standard's: GSB of at least -5 %, at least 200 pairs
    and a one-sided sign test at alpha = 0.05.
    """
    settings = dict(pack_settings.get("human_evaluation", {}))
    section = HUMAN_METRICS.get(metric_name)
    if section:
        settings.update(pack_settings.get(section, {}).get("human_evaluation") or {})
    return {"gsb_min": settings.get("gsb_min", -0.05), "min_pairs": settings.get("min_pairs", 200), "alpha": settings.get("alpha", 0.05)}


# Evaluators ----------------------------------------------------------------


@criterion("loss_window_alignment")
def loss_window_alignment(context: CriterionContext) -> Outcome:
    settings = context.settings["loss_alignment"]
    steps, window = settings["steps"], settings["window"]
    bound = {"mean_relative_error_max": settings["mean_relative_error_max"], "max_relative_error_max": settings["max_relative_error_max"]}
    vendor = metrics.loss_windows(context.vendor.losses_through(steps), steps, window)
    reference = _reference_value(lambda: metrics.loss_windows(context.reference.losses_through(steps), steps, window))
    if reference.missing_steps or reference.non_finite_steps:
        return _reference_unusable(f"reference loss curve is incomplete or not finite over steps 1-{steps}",
                                   f"参考损失曲线在第 1-{steps} 步不完整或含非有限值")
    non_finite = context.vendor.non_finite_loss_steps()
    if non_finite:
        return Outcome(FAIL, "loss_non_finite", bound=bound, fields={"steps": _step_list(non_finite)}, details={"non_finite_steps": non_finite[:50]})
    if vendor.missing_steps:
        return run_too_short(steps, vendor.missing_steps, bound)
    errors = metrics.relative_errors(vendor.means, reference.means)
    passed = errors.mean <= bound["mean_relative_error_max"] and errors.max <= bound["max_relative_error_max"]
    fields = {"steps": steps, "window": window, "mean": errors.mean, "max": errors.max, "mean_bound": bound["mean_relative_error_max"], "max_bound": bound["max_relative_error_max"], "worst_window": int(np.argmax(errors.values)) + 1}
    details = {"vendor_window_means": vendor.means, "reference_window_means": reference.means, "relative_errors": errors.values}
    measured = {"mean_relative_error": errors.mean, "max_relative_error": errors.max}
    return Outcome(PASS if passed else FAIL, "loss_alignment_pass" if passed else "loss_alignment_fail", measured, {"window_means": len(reference.means)}, bound, fields, details)


def run_too_short(required: int, missing: list[int], bound: Any, missing_count: int | None = None) -> Outcome:
    """Return the failure of a criterion whose steps 1..`required` are not all logged.

    `missing` may list only the first missing steps when `missing_count` gives their number.
    """
    fields = {"required": required, "missing_count": len(missing) if missing_count is None else missing_count, "first_missing": missing[0]}
    return Outcome(FAIL, "run_too_short", bound=bound, fields=fields, details={"missing_steps": missing[:50]})


@criterion("validation_loss_difference")
def validation_loss_difference(context: CriterionContext) -> Outcome:
    bound = context.settings["validation_loss"]["absolute_error_max"]
    measured = metrics.validation_loss(context.vendor.validation)
    reference = _reference_value(lambda: metrics.validation_loss(context.reference.validation))
    if not math.isfinite(reference):
        return _reference_unusable("the reference validation loss is missing or not finite", "参考验证集损失缺失或不是有限值")
    difference = abs(measured - reference) if math.isfinite(measured) else math.inf
    passed = difference <= bound
    fields = {"measured": measured, "reference": reference, "difference": difference, "bound": bound}
    return Outcome(PASS if passed else FAIL, "validation_loss_pass" if passed else "validation_loss_fail", measured, reference, bound, fields, {"absolute_error": difference})


@criterion("lambada_accuracy_difference")
def lambada_accuracy_difference(context: CriterionContext) -> Outcome:
    settings = context.settings["lambada"]
    bound, items = settings["difference_max_points"], settings["items"]
    vendor = metrics.lambada_accuracy(context.vendor.lambada, items)
    if vendor.duplicate_indices:
        raise RecordsInvalid(f"lambada.jsonl repeats item indices {vendor.duplicate_indices[:5]}",
                             f"lambada.jsonl 中的样本编号重复：{vendor.duplicate_indices[:5]}")
    reference = _reference_value(lambda: metrics.lambada_accuracy(context.reference.lambada, items))
    difference = vendor.accuracy - reference.accuracy
    passed = abs(difference) <= bound
    details = _lambada_details(context, vendor, reference, items)
    fields = {"measured": vendor.accuracy, "reference": reference.accuracy, "difference": difference, "bound": bound, "items": items}
    return Outcome(PASS if passed else FAIL, "lambada_pass" if passed else "lambada_fail", vendor.accuracy, reference.accuracy, bound, fields, details)


def _lambada_details(context: CriterionContext, vendor: metrics.LambadaResult, reference: metrics.LambadaResult, items: int) -> dict:
    vendor_vector = metrics.correctness_vector(context.vendor.lambada, items)
    reference_vector = metrics.correctness_vector(context.reference.lambada, items)
    low, high = metrics.paired_bootstrap(vendor_vector * 100.0, reference_vector * 100.0)
    return {
        "vendor_correct": vendor.correct, "vendor_recorded": vendor.recorded,
        "reference_correct": reference.correct, "expected_items": items,
        "relative_difference": _relative(vendor.accuracy, reference.accuracy),
        "difference_ci95": [low, high],
        **metrics.discordant_pairs(vendor_vector, reference_vector),
    }


@criterion("rouge_difference")
def rouge_difference(context: CriterionContext) -> Outcome:
    bound = context.settings["rouge"]["difference_max_points"]
    variants = context.settings["rouge"].get("variants", list(metrics.ROUGE_VARIANTS))
    vendor_pairs, reference_pairs = _paired_predictions(context)
    vendor_scores, reference_scores = metrics.rouge_per_sample_pair(vendor_pairs, reference_pairs)
    measured = {variant: float(vendor_scores[variant].mean()) for variant in variants}
    reference = {variant: float(reference_scores[variant].mean()) for variant in variants}
    differences = {variant: measured[variant] - reference[variant] for variant in variants}
    passed = all(abs(value) <= bound for value in differences.values())
    summary = ", ".join(f"{variant} {measured[variant]:.2f} vs {reference[variant]:.2f} ({differences[variant]:+.2f})" for variant in variants)
    details = {
        "samples": len(vendor_pairs),
        "empty_predictions": sum(1 for prediction, _ in vendor_pairs if not prediction),
        "differences": differences,
        "relative_differences": {variant: _relative(measured[variant], reference[variant]) for variant in variants},
        "difference_ci95": {variant: list(metrics.paired_bootstrap(vendor_scores[variant], reference_scores[variant])) for variant in variants},
        "tokenizer": metrics.CjkWordTokenizer.name, "implementation": "rouge-score 0.1.2",
    }
    return Outcome(PASS if passed else FAIL, "rouge_pass" if passed else "rouge_fail", measured, reference, bound, {"bound": bound, "summary": summary}, details)


def _paired_predictions(context: CriterionContext) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Pair both sides by (dataset, index) over the reference's samples; a sample the vendor lacks scores 0."""
    vendor = _predictions_by_sample(context.vendor.predictions)
    reference = _reference_value(lambda: {key: (_prediction_text(row, "prediction"), _prediction_text(row, "reference"))
                                          for key, row in _predictions_by_sample(context.reference.predictions).items()})
    if not reference:
        raise _ReferenceProblem("the reference has no predictions", "参考结果没有预测输出")
    vendor_pairs, reference_pairs = [], []
    for key in sorted(reference, key=str):
        prediction, answer = reference[key]
        vendor_pairs.append((_prediction_text(vendor[key], "prediction") if key in vendor else "", answer))
        reference_pairs.append((prediction, answer))
    return vendor_pairs, reference_pairs


def _predictions_by_sample(rows: list[dict]) -> dict[tuple, dict]:
    """Key predictions.jsonl records by (dataset, index), or raise RecordsInvalid for a key that is a list or an object."""
    by_sample = {}
    for row in rows:
        key = (row.get("dataset"), row.get("index"))
        if any(isinstance(part, (list, dict)) for part in key):
            raise RecordsInvalid(f"a record of predictions.jsonl has the dataset {key[0]!r} and index {key[1]!r}, not a name and a number",
                                 f"predictions.jsonl 中有一条记录的 dataset 是 {key[0]!r}、index 是 {key[1]!r}，不是名称和编号")
        by_sample[key] = row
    return by_sample


def _prediction_text(row: dict, key: str) -> str:
    """Return the `prediction` or `reference` text of a predictions.jsonl record ("" for none), or raise RecordsInvalid for a value that is not text."""
    value = row.get(key) or ""
    if not isinstance(value, str):
        raise RecordsInvalid(f"sample {row.get('index')} of {row.get('dataset')} in predictions.jsonl has the {key} {value!r}, not text",
                             f"predictions.jsonl 中 {row.get('dataset')} 的样本 {row.get('index')} 的 {key} 是 {value!r}，不是文本")
    return value


@criterion("throughput_ratio")
def throughput_ratio(context: CriterionContext) -> Outcome:
    settings = context.settings["throughput"]
    first, last = settings["mean_steps"]
    data_type = settings["data_type"]
    bound = context.throughput_bound
    if bound is None:
        return Outcome(NOT_APPLICABLE, "throughput_not_required")
    refused = peak_missing(context, data_type, bound)
    if refused is not None:
        return refused
    logged = context.vendor.losses_through(last)
    missing = [step for step in range(first, last + 1) if step not in logged]
    if missing:
        return run_too_short(last, missing, bound)
    return _throughput_outcome(context, first, last, data_type, bound)


def _throughput_outcome(context: CriterionContext, first: int, last: int, data_type: str, bound: float) -> Outcome:
    vendor = metrics.throughput(context.vendor.rows_through(last), first, last)
    reference = _reference_value(lambda: metrics.throughput(context.reference.rows_through(last), first, last))
    if reference.steps != last - first + 1 or not reference.mean > 0:
        return _reference_unusable(f"the reference lacks throughput for steps {first}-{last}", f"参考结果缺少第 {first}-{last} 步的吞吐")
    vendor_per_tflops = metrics.per_tflops(vendor.mean, context.vendor_peaks[data_type])
    reference_per_tflops = metrics.per_tflops(reference.mean, context.reference_peaks[data_type])
    ratio = vendor_per_tflops / reference_per_tflops
    passed = ratio >= bound
    details = {
        "ratio": ratio, "data_type": data_type, "steps": [first, last],
        "vendor": {"tokens_per_second_per_card": vendor.__dict__, "peak_tflops": context.vendor_peaks[data_type], "per_tflops": vendor_per_tflops},
        "reference": {"tokens_per_second_per_card": reference.__dict__, "peak_tflops": context.reference_peaks[data_type], "per_tflops": reference_per_tflops},
    }
    return Outcome(PASS if passed else FAIL, "throughput_pass" if passed else "throughput_fail", vendor_per_tflops, reference_per_tflops, bound, {"ratio": ratio, "bound": bound}, details)


@criterion("human_gsb", human=True)
def human_gsb(context: CriterionContext) -> Outcome:
    settings = context.settings.get("human_evaluation", {})
    if not settings.get("enabled", False):
        return Outcome(NOT_APPLICABLE, "human_disabled")
    result = (context.human or {}).get(context.criterion["id"])
    if not result:
        return Outcome(PENDING, "human_pending")
    return _human_outcome(result, settings)


def _human_outcome(result: dict, settings: dict) -> Outcome:
    good, same, bad = (int(result.get(key, 0)) for key in ("good", "same", "bad"))
    total = good + same + bad
    gsb = (good - bad) / total if total else math.nan
    p_value = sign_test_p_value(good, bad)
    bound = {"gsb_min": settings.get("gsb_min", -0.05), "min_pairs": settings.get("min_pairs", 200), "alpha": settings.get("alpha", 0.05)}
    reason = _human_failure(total, gsb, p_value, result.get("signed_off_by"), bound)
    fields = {"good": good, "same": same, "bad": bad, "gsb": gsb, "p_value": p_value, "signed_off_by": result.get("signed_off_by"), "reason": reason}
    details = {"pairs": total, "p_value": p_value}
    return Outcome(FAIL if reason else PASS, "human_fail" if reason else "human_pass", gsb, None, bound, fields, details)


def _human_failure(total: int, gsb: float, p_value: float, signer: str | None, bound: dict) -> str:
    if total < bound["min_pairs"]:
        return f"{total} pairs, at least {bound['min_pairs']} required"
    if gsb < bound["gsb_min"]:
        return f"GSB {gsb:+.1%} is below {bound['gsb_min']:+.0%}"
    if p_value < bound["alpha"]:
        return f"the sign test shows the vendor worse (p = {p_value:.3f})"
    if not signer:
        return "no staff member signed off"
    return ""


def sign_test_p_value(good: int, bad: int) -> float:
    """Return P(B >= bad) for B ~ Binomial(good + bad, 1/2): the one-sided sign test that the vendor is worse."""
    trials = good + bad
    if trials == 0:
        return 1.0
    return math.fsum(math.comb(trials, count) for count in range(bad, trials + 1)) / 2.0**trials


# Shared helpers ------------------------------------------------------------


class _ReferenceProblem(Exception):
    """The reference records cannot support the comparison, described in English and, where known, in Chinese."""

    def __init__(self, problem: str, problem_zh: str | None = None):
        super().__init__(problem)
        self.problem_zh = problem_zh


# Chinese names of the two sides of a comparison, for messages whose English names the side by its key.
SIDE_NAMES_ZH = {"vendor": "厂商", "reference": "参考"}


def peak_missing(context: CriterionContext, data_type: str, bound: float) -> Outcome | None:
    """Return the refused outcome when the vendor or reference card has no peak TFLOPS for `data_type`, else None."""
    for side, peaks in (("vendor", context.vendor_peaks), ("reference", context.reference_peaks)):
        if not (peaks or {}).get(data_type, 0) > 0:
            fields = {"side": side, "side_zh": SIDE_NAMES_ZH[side], "data_type": data_type}
            return Outcome(REFUSED, "peak_missing", bound=bound, fields=fields)
    return None


def _reference_value(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except (RecordsInvalid, BundleError, ValueError, KeyError, TypeError) as error:
        raise _ReferenceProblem(str(error), problem_zh(error)) from None


def problem_zh(error: Exception) -> str:
    """Return the Chinese text of a problem that a record reader raised.

    A RecordsInvalid carries its own, a BundleError is described from its code and values, and a KeyError
    names the missing key. The record readers, the metric functions and decode_float raise RecordsInvalid for a
    malformed value. NOTE: a ValueError or TypeError from a reader that does not check its values is named only
    by its type, because its English message cannot be translated. Setting each field of the demo pack's level-1
    records to a string, null, list, object or boolean no longer raises one.
    """
    if isinstance(error, RecordsInvalid):
        return error.problem_zh
    if isinstance(error, BundleError):
        return bundle_error_zh(error)
    if isinstance(error, KeyError) and error.args:
        return f"记录中缺少键 {error.args[0]!r}"
    return f"记录中的值无法解析（{type(error).__name__}）"


def _reference_unusable(problem: str, problem_zh: str | None = None) -> Outcome:
    """Refuse the criterion because the reference cannot be used, with the problem in English and Chinese."""
    return Outcome(REFUSED, "reference_unusable", fields={"problem": problem, "problem_zh": problem_zh or problem})


def _relative(measured: float, reference: float) -> float:
    return (measured - reference) / abs(reference) if reference else math.nan


def _step_list(steps: list[int]) -> str:
    shown = ", ".join(str(step) for step in steps[:10])
    return shown + (f" (+{len(steps) - 10} more)" if len(steps) > 10 else "")


def evaluate(context: CriterionContext) -> Outcome:
    """Run the evaluator that the criterion's metric names, turning bad records into a failing outcome."""
    metric = context.criterion.get("metric")
    if metric not in CRITERIA:
        return Outcome(FAIL, "metric_unknown", fields={"metric": metric})
    try:
        return CRITERIA[metric](context)
    except _ReferenceProblem as error:
        return _reference_unusable(str(error), error.problem_zh)
    except (RecordsInvalid, BundleError, ValueError, KeyError, TypeError) as error:
        problem = str(error) if isinstance(error, (RecordsInvalid, BundleError)) else f"{type(error).__name__}: {error}"
        return Outcome(FAIL, "records_invalid", fields={"workload": context.workload_id, "problem": problem, "problem_zh": problem_zh(error)})
