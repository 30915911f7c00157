"""Inference criteria: QPS per TFLOPS under the time-to-first-token limit, and data types a device lacks.

LAMBADA accuracy per data type uses the `lambada_accuracy_difference`
criterion on the workload's lambada.jsonl, and the prompt set's greedy
outputs (generations.jsonl) go to human evaluation through `human_gsb`.

The QPS figure is recomputed here from requests.jsonl, with the rule pack's
percentile, TTFT limit and failure allowance, never taken from search.json's
own summaries: search.json only declares which trials ran at which level.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from certification import metrics
from certification.criteria import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    REFUSED,
    CriterionContext,
    Outcome,
    RecordsInvalid,
    WorkloadRecords,
    _reference_value,
    criterion,
    peak_missing,
)
from certification.latency import TrialSummary, summarize_trial
from certification.records import integer_field, number_field
from certification.verdict_messages import MESSAGES, render

LOAD_MODELS = {"open_loop_poisson": "poisson", "closed_loop_concurrency": "concurrency"}

# Messages of this module's codes, kept next to the code that uses them.
MESSAGES.update({
    "qps_pass": (
        "QPS/TFLOPS 为参考的 {ratio:.1%}（下限 {bound:.0%}）：QPS {vendor_qps:.3f}，负载 {vendor_level}，p{percentile} 首字延迟 ≤ {limit} 秒。",
        "QPS/TFLOPS is {ratio:.1%} of the reference (bound {bound:.0%}): QPS {vendor_qps:.3f} at load {vendor_level}, p{percentile} TTFT ≤ {limit} s.",
        "无需操作。", "Nothing to do.",
    ),
    "qps_fail": (
        "QPS/TFLOPS 为参考的 {ratio:.1%}，低于下限 {bound:.0%}：QPS {vendor_qps:.3f}（负载 {vendor_level}），参考 {reference_qps:.3f}（负载 {reference_level}）。",
        "QPS/TFLOPS is {ratio:.1%} of the reference, below the bound {bound:.0%}: QPS {vendor_qps:.3f} at load {vendor_level}, reference {reference_qps:.3f} at load {reference_level}.",
        "检查推理服务的批处理与并发设置，在首字延迟上限内提高吞吐后重新运行。",
        "Check the server's batching and concurrency settings, raise throughput within the TTFT limit and run again.",
    ),
    "qps_no_level": (
        "没有得到确认的负载水平：共 {trials} 次试验，没有一个负载水平有至少 {required} 次试验（1 次加 {confirmations} 次确认）"
        "且全部满足 p{percentile} 首字延迟 ≤ {limit} 秒。",
        "No load level was confirmed: of {trials} trials, no level had at least {required} trials (one and {confirmations} "
        "confirmations) that all met p{percentile} TTFT ≤ {limit} s.",
        "查看 requests.jsonl 中失败或超时的请求；失败的请求按未满足延迟上限计。",
        "Read the failed and timed-out requests in requests.jsonl; a failed request counts as missing the limit.",
    ),
    "qps_reference_no_level": (
        "参考结果无法使用。参考运行：{reason_zh}",
        "The reference result cannot be used. Reference run: {reason_en}",
        "使用认证人员为该规则包发布的参考结果包。",
        "Use the reference bundles that certification staff published for this rule pack.",
    ),
    "qps_trial_load_model": (
        "试验 {trial} 使用的负载模型是 {recorded}，而规则包要求 {required}。无效的试验共 {invalid} 次，没有得到确认的负载水平。",
        "Trial {trial} used load model {recorded}, but the rule pack requires {required}. Invalid trials: {invalid}, and no load level was confirmed.",
        "使用与规则包相符的 agent 版本重新运行推理工作负载。",
        "Run the inference workload again with an agent version that matches the rule pack.",
    ),
    "qps_trial_too_short": (
        "试验 {trial} 只测量了 {recorded} 秒，而规则包要求至少 {required} 秒。无效的试验共 {invalid} 次，没有得到确认的负载水平。",
        "Trial {trial} was measured for {recorded} s, but the rule pack requires at least {required} s. "
        "Invalid trials: {invalid}, and no load level was confirmed.",
        "使用与规则包相符的 agent 版本重新运行推理工作负载，使每次试验达到规定的最短时长。",
        "Run the inference workload again with an agent version that matches the rule pack, so that each trial lasts the minimum duration.",
    ),
    "data_type_not_supported": (
        "工作负载 {workload} 的数据类型 {data_type} 在该设备上不受支持：{reason}。",
        "Workload {workload}: data type {data_type} is not supported on this device: {reason}.",
        "该级别需要此数据类型的内核；在提供这些内核的设备或软件版本上重新运行。",
        "This level needs kernels for the data type; run again on a device or software version that has them.",
    ),
})


@dataclass(frozen=True)
class QpsResult:
    """The highest confirmed load level of one side, its QPS (lowest over its trials) and every trial's summary."""

    level: float | None
    qps: float | None
    trials: dict[int, TrialSummary]
    reason: str
    # The MESSAGES code and fields that explain a missing level in each language.
    reason_code: str = ""
    reason_fields: dict[str, Any] = field(default_factory=dict)


def not_supported_outcome(records: WorkloadRecords) -> Outcome:
    """Return the failing outcome for a workload that recorded status not_supported, naming the data type."""
    summary = records.result.get("summary") or {}
    data_type = summary.get("data_type") or "(unknown)"
    reason = summary.get("not_supported_reason") or summary.get("reason") or "no reason recorded"
    fields = {"workload": records.workload_id, "data_type": data_type, "reason": reason}
    return Outcome(FAIL, "data_type_not_supported", fields=fields, details={"not_supported": True, "data_type": data_type})


def qps_from_records(records: WorkloadRecords, settings: dict[str, Any]) -> QpsResult:
    """Recompute every trial from requests.jsonl and return the highest level whose trials all passed.

    A level counts when it has at least 1 + `confirmations` trials, each as
    long as `min_duration_seconds` under the pack's load model, and every
    trial at it passed: the nearest-rank TTFT percentile within the limit
    and no more failed requests than `failed_requests_max`.
    """
    search = records._json("search.json")
    by_trial: dict[int, list[dict]] = defaultdict(list)
    for row in records._jsonl("requests.jsonl"):
        by_trial[integer_field(row, "trial", f"request {row.get('index')} in requests.jsonl", f"requests.jsonl 中的请求 {row.get('index')} ")].append(row)

    limit, percentile = float(settings["time_to_first_token_max_seconds"]), float(settings["time_to_first_token_percentile"])
    failed_max = int(settings.get("failed_requests_max", 0))
    load_model = LOAD_MODELS.get(settings.get("load_model", "open_loop_poisson"), settings.get("load_model"))
    levels: dict[float, list[int]] = defaultdict(list)
    summaries: dict[int, TrialSummary] = {}
    problems = []
    for trial in _trial_list(search):
        number = integer_field(trial, "trial", "a trial in search.json", "search.json 中某个试验")
        summaries[number] = summarize_trial(by_trial.get(number, []), limit, percentile, failed_max)
        problem = _trial_problem(trial, settings, load_model)
        if problem:
            problems.append((number, *problem))
            summaries[number] = TrialSummary(**{**summaries[number].__dict__, "passed": False, "reason": _problem_text(*problem)})
        levels[number_field(trial, "level", f"trial {number} in search.json", f"search.json 中的试验 {number} ")].append(number)
    return _best_level(levels, summaries, int(settings.get("confirmations", 2)), problems)


def _trial_list(search: Any) -> list[dict]:
    trials = search.get("trials") if isinstance(search, dict) else None
    if not isinstance(trials, list) or not all(isinstance(trial, dict) and "trial" in trial and "level" in trial for trial in trials):
        raise RecordsInvalid("search.json has no list of trials with 'trial' and 'level'", "search.json 中没有含 'trial' 与 'level' 的试验列表")
    return trials


# English texts of the problems that make a trial invalid, by the suffix of their `qps_trial_*` message code.
TRIAL_PROBLEMS = {
    "load_model": "load model {recorded!r}, the pack requires {required!r}",
    "too_short": "measured for {recorded} s, the pack requires at least {required} s",
}


def _trial_problem(trial: dict, settings: dict[str, Any], load_model: str) -> tuple[str, dict[str, Any]] | None:
    """Return the kind (a TRIAL_PROBLEMS key) and fields of what makes a trial invalid, or None for a valid trial."""
    if trial.get("load_model") != load_model:
        return "load_model", {"recorded": trial.get("load_model"), "required": load_model}
    duration = number_field({"duration_seconds": 0, **trial}, "duration_seconds", f"trial {trial['trial']} in search.json", f"search.json 中的试验 {trial['trial']} ")
    if duration < float(settings["min_duration_seconds"]):
        return "too_short", {"recorded": trial.get("duration_seconds"), "required": settings["min_duration_seconds"]}
    return None


def _problem_text(kind: str, fields: dict[str, Any]) -> str:
    return TRIAL_PROBLEMS[kind].format(**fields)


def _best_level(levels: dict[float, list[int]], summaries: dict[int, TrialSummary], confirmations: int,
                problems: list[tuple[int, str, dict[str, Any]]]) -> QpsResult:
    """Find the highest level at which at least 1 + `confirmations` trials ran and all passed, with its QPS.

    `problems` lists the invalid trials as (trial number, TRIAL_PROBLEMS kind, fields).
    """
    required = 1 + confirmations
    qualifying = [level for level, numbers in levels.items()
                  if len(numbers) >= required and all(summaries[number].passed for number in numbers)]
    if not qualifying and problems:
        number, kind, fields = problems[0]
        reason = "; ".join(f"trial {trial}: {_problem_text(*problem)}" for trial, *problem in problems[:3])
        return QpsResult(None, None, summaries, reason, f"qps_trial_{kind}", {"trial": number, "invalid": len(problems), **fields})
    if not qualifying:
        reason = f"of {len(summaries)} trials, no level had at least {required} trials that all passed"
        return QpsResult(None, None, summaries, reason, "qps_no_level", {"trials": len(summaries), "required": required})
    best = max(qualifying)
    return QpsResult(best, min(summaries[number].qps for number in levels[best]), summaries, "")


@criterion("qps_per_tflops_ratio")
def qps_per_tflops_ratio(context: CriterionContext) -> Outcome:
    """Compare (vendor QPS / vendor peak) with (reference QPS / reference peak) against the level's bound.

    Both peaks are the cards' dense TFLOPS for `settings.inference.peak_data_type`
    (FP16/BF16 in the standard's pack) for every data type, INT8 and INT4
    included, so that gains from quantisation count.
    """
    settings = context.settings["inference"]
    data_type, bound = settings["peak_data_type"], context.throughput_bound
    if bound is None:
        return Outcome(NOT_APPLICABLE, "throughput_not_required")
    refused = peak_missing(context, data_type, bound)
    if refused is not None:
        return refused

    vendor = qps_from_records(context.vendor, settings)
    common = {"percentile": f"{float(settings['time_to_first_token_percentile']):g}", "limit": settings["time_to_first_token_max_seconds"],
              "confirmations": settings.get("confirmations", 2)}
    if vendor.level is None:
        return Outcome(FAIL, vendor.reason_code, bound=bound, fields={**common, **vendor.reason_fields}, details=_trial_details(vendor))
    reference = _reference_value(lambda: qps_from_records(context.reference, settings))
    if reference.level is None:
        return _reference_without_level(reference, common)
    return _ratio_outcome(context, vendor, reference, data_type, bound, common)


def _reference_without_level(reference: QpsResult, common: dict[str, Any]) -> Outcome:
    """Refuse the criterion because the reference run confirmed no load level, saying why in each language."""
    reason, _hint = render(reference.reason_code, **common, **reference.reason_fields)
    return Outcome(REFUSED, "qps_reference_no_level", fields={"reason_zh": reason["zh"], "reason_en": reason["en"]})


def _ratio_outcome(context: CriterionContext, vendor: QpsResult, reference: QpsResult, data_type: str, bound: float,
                   common: dict[str, Any]) -> Outcome:
    vendor_per_tflops = metrics.per_tflops(vendor.qps, context.vendor_peaks[data_type])
    reference_per_tflops = metrics.per_tflops(reference.qps, context.reference_peaks[data_type])
    if not reference_per_tflops > 0:  # a wall time beyond the float range gives a QPS of 0
        fields = {"problem": f"the reference QPS is {reference.qps!r}, not a positive number", "problem_zh": f"参考结果的 QPS 是 {reference.qps!r}，不是正数"}
        return Outcome(REFUSED, "reference_unusable", fields=fields)
    ratio = vendor_per_tflops / reference_per_tflops
    passed = ratio >= bound
    fields = {**common, "ratio": ratio, "bound": bound, "vendor_qps": vendor.qps, "vendor_level": f"{vendor.level:g}",
              "reference_qps": reference.qps, "reference_level": f"{reference.level:g}"}
    details = {
        "ratio": ratio, "peak_data_type": data_type,
        "vendor": {"qps": vendor.qps, "level": vendor.level, "peak_tflops": context.vendor_peaks[data_type], "per_tflops": vendor_per_tflops},
        "reference": {"qps": reference.qps, "level": reference.level, "peak_tflops": context.reference_peaks[data_type], "per_tflops": reference_per_tflops},
        **_trial_details(vendor),
    }
    return Outcome(PASS if passed else FAIL, "qps_pass" if passed else "qps_fail", vendor_per_tflops, reference_per_tflops, bound, fields, details)


def _trial_details(result: QpsResult) -> dict[str, Any]:
    return {"vendor_trials": {str(number): summary.to_dict() for number, summary in sorted(result.trials.items())}}
