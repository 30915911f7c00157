"""The verdict engine: a vendor bundle against reference bundles under one rule pack.

`judge` evaluates every criterion of every workload that the pack's tracks
require, recomputing each figure from the raw records of both bundles, and
derives the level reached per track. The same function runs in
`python -m agent check` and in the portal. It reads no clock and no random
state except a fixed-seed bootstrap, so the same inputs give the same verdict.

Published rule packs are immutable: a verdict names the pack and the sha256 of
its bytes, so an edited pack is a different pack, and an old verdict keeps
pointing at the exact text it was judged by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from certification import criteria_sd  # noqa: F401  (registers the SD criteria)
from certification import criteria_stability  # noqa: F401  (registers warm_start_stability)
from certification import criteria_inference  # noqa: F401  (registers the inference criteria)
from certification.bundle import VerifiedBundle
from certification.criteria import FAIL, NOT_APPLICABLE, PASS, PENDING, REFUSED, CriterionContext, Outcome, RecordsInvalid, WorkloadRecords, evaluate, problem_zh
from certification.errors import BundleError
from certification.inputs import InputRecordsInvalid, compare_inputs, input_outcome
from certification.records import encode_float
from certification.rulepack import RulePack
from certification.run_length import check_run_length, epoch_batches_outcome, has_run_length, reference_epochs_problem
from certification.verdict_messages import render, render_reference_choice

# Run conditions that must be equal on both sides for a comparison to mean anything.
COMPARED_HYPERPARAMETERS = ("max_seq_length", "global_batch_size")
PASSING = (PASS, NOT_APPLICABLE)


class VerdictInputError(ValueError):
    """Inputs that `judge` cannot combine, such as bundles of two different cards; `code` is stable."""

    def __init__(self, code: str, message: str, hint: str):
        super().__init__(message)
        self.code = code
        self.hint = hint


@dataclass(frozen=True)
class Reference:
    """A reference bundle with the peak dense TFLOPS by data type of the card it ran on."""

    bundle: VerifiedBundle
    peaks: dict[str, float]


@dataclass
class CriterionResult:
    """One line of a verdict: a criterion of one workload with its figures, status and messages."""

    id: str
    workload: str
    metric: str
    status: str
    measured: Any
    reference: Any
    bound: Any
    explanation: dict[str, str]
    hint: dict[str, str]
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return _json_ready(dict(self.__dict__))


@dataclass
class Verdict:
    """The outcome of `judge`: the rule pack used, every criterion, the level per track and each workload's input comparison."""

    rule_pack: dict[str, str]
    reference_kind: str
    bundle_id: str
    reference_bundle_ids: list[str]
    criteria: list[CriterionResult]
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)
    bundle_ids: list[str] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)
    flags: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Return True when any criterion failed or could not be compared (refused)."""
        return any(result.status in (FAIL, REFUSED) for result in self.criteria)

    def criterion(self, criterion_id: str) -> CriterionResult:
        for result in self.criteria:
            if result.id == criterion_id:
                return result
        raise KeyError(criterion_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_pack": dict(self.rule_pack),
            "reference_kind": self.reference_kind,
            "bundle_id": self.bundle_id,
            "reference_bundle_ids": list(self.reference_bundle_ids),
            "bundle_ids": list(self.bundle_ids),
            "card": dict(self.card),
            "criteria": [result.to_dict() for result in self.criteria],
            "tracks": _json_ready(self.tracks),
            "flags": _json_ready(self.flags),
            "inputs": _json_ready(self.inputs),
        }


def judge(
    bundles: VerifiedBundle | Sequence[VerifiedBundle],
    references: Sequence[Reference | tuple[VerifiedBundle, dict[str, float]]],
    pack: RulePack,
    card_peaks: dict[str, float],
    human: dict[str, dict] | None = None,
    carried: Sequence[dict] = (),
) -> Verdict:
    """Judge the vendor bundles of one card against `references` under `pack`.

    `bundles` is one bundle or several bundles of the same vendor and card
    model, oldest first: each workload is judged from the newest bundle that
    contains it, so a vendor adds missing workloads later without running the
    others again. `carried` holds earlier verdicts (`Verdict.to_dict()`) of
    the same card and pack; a workload that no bundle contains keeps its
    criteria from the newest of those verdicts in which all of them passed.

    `card_peaks` are the card's registered peak dense TFLOPS by data type
    (such as {"bf16": 312.0}); a peak stated in a bundle never replaces them
    and is only flagged when it differs. Each reference carries its own
    card's peaks. `human` maps a human_gsb criterion id to {"good", "same",
    "bad", "signed_off_by"}.
    """
    bundle_list = [bundles] if isinstance(bundles, VerifiedBundle) else list(bundles)
    card = _common_card(bundle_list)
    reference_list = [item if isinstance(item, Reference) else Reference(*item) for item in references]
    target_level = max(_target_level(bundle) for bundle in bundle_list)
    earlier = _usable_verdicts(carried, pack, card)
    results, inputs = [], {}
    for workload_id, (track, _level) in workload_placements(pack).items():
        bound = throughput_bound(pack, track, target_level)
        bundle = _newest_with(bundle_list, workload_id)
        judged, compared = _judge_workload(bundle, reference_list, pack, workload_id, card_peaks, human, bound)
        judged, compared = _carry_if_missing(judged, compared, workload_id, earlier)
        results.extend(judged)
        if compared is not None:
            inputs[workload_id] = compared
    return Verdict(
        rule_pack={"name": pack.name, "sha256": pack.sha256},
        reference_kind=pack.reference_kind,
        bundle_id=bundle_list[-1].bundle_id,
        reference_bundle_ids=[reference.bundle.bundle_id for reference in reference_list],
        criteria=results,
        tracks=derive_levels(pack, results),
        bundle_ids=[bundle.bundle_id for bundle in bundle_list],
        card=card,
        flags=peak_flags(bundle_list, card_peaks),
        inputs=inputs,
    )


# Several bundles and earlier verdicts of one card ---------------------------


def _common_card(bundles: list[VerifiedBundle]) -> dict[str, Any]:
    """Return the vendor and card model that every bundle names; raise VerdictInputError when they differ."""
    if not bundles:
        raise VerdictInputError("bundles_missing", "no vendor bundle to judge", "pass at least one verified bundle")
    cards = [{"vendor": bundle.manifest.get("vendor"), "model": (bundle.manifest.get("card") or {}).get("model")} for bundle in bundles]
    for bundle, card in zip(bundles[1:], cards[1:]):
        if card != cards[0]:
            raise VerdictInputError(
                "bundles_of_different_cards",
                f"bundle {bundle.bundle_id} is for {card['vendor']} {card['model']}, not {cards[0]['vendor']} {cards[0]['model']}",
                "judge together only bundles of one vendor's card model",
            )
    return cards[0]


def _newest_with(bundles: list[VerifiedBundle], workload_id: str) -> VerifiedBundle:
    """Return the last bundle that contains the workload, or the last bundle when none does."""
    for bundle in reversed(bundles):
        if WorkloadRecords(bundle, workload_id).exists():
            return bundle
    return bundles[-1]


def _usable_verdicts(carried: Sequence[dict], pack: RulePack, card: dict[str, Any]) -> list[dict]:
    """Return earlier verdicts of the same pack bytes and card, newest first; other cards raise VerdictInputError."""
    usable = []
    for verdict in carried:
        if verdict.get("rule_pack") != {"name": pack.name, "sha256": pack.sha256}:
            continue
        if verdict.get("card") != card:
            raise VerdictInputError(
                "carried_verdict_other_card",
                f"earlier verdict of bundle {verdict.get('bundle_id')} is for card {verdict.get('card')}, not {card}",
                "carry only verdicts of the card being judged",
            )
        usable.append(verdict)
    return list(reversed(usable))


def _carry_if_missing(judged: list[CriterionResult], compared: dict | None, workload_id: str,
                      earlier: list[dict]) -> tuple[list[CriterionResult], dict | None]:
    """Replace a missing workload's results and input comparison with those of the newest earlier verdict in which all results passed."""
    if not earlier or judged[0].details.get("code") not in ("workload_missing", "workload_not_run"):
        return judged, compared
    for verdict in earlier:
        previous = [item for item in verdict.get("criteria", []) if item.get("workload") == workload_id]
        if previous and all(item.get("status") in PASSING for item in previous):
            return [_carried_result(item, verdict) for item in previous], (verdict.get("inputs") or {}).get(workload_id)
    return judged, compared


def _carried_result(item: dict, verdict: dict) -> CriterionResult:
    details = {**item.get("details", {}), "carried_from": {"bundle_id": verdict.get("bundle_id"), "bundle_ids": verdict.get("bundle_ids", [])}}
    return CriterionResult(
        item["id"], item["workload"], item.get("metric", ""), item["status"], item.get("measured"), item.get("reference"),
        item.get("bound"), dict(item["explanation"]), dict(item["hint"]), details,
    )


def peak_flags(bundles: list[VerifiedBundle], card_peaks: dict[str, float]) -> list[dict[str, Any]]:
    """Flag every peak TFLOPS that a bundle's environment.json states and the card registry does not confirm.

    The registry's value is always the one divided by; a flag only makes the
    disagreement visible so that staff or the vendor correct one of them.
    """
    flags = []
    for bundle in bundles:
        stated = _stated_peaks(bundle)
        for data_type in sorted(stated):
            registered = card_peaks.get(data_type)
            if registered is not None and math.isclose(stated[data_type], registered, rel_tol=1e-9):
                continue
            flags.append(_peak_flag(bundle.bundle_id, data_type, stated[data_type], registered))
    return flags


def _stated_peaks(bundle: VerifiedBundle) -> dict[str, float]:
    """Return the numbers of environment.json's peak_tflops by lower-case data type, leaving out anything that is not a number in the float range."""
    if not bundle.has("environment.json"):
        return {}
    try:
        stated = bundle.read_json("environment.json").get("peak_tflops") or {}
    except (BundleError, AttributeError):
        return {}
    if not isinstance(stated, dict):
        return {}
    return {str(key).lower(): float(value) for key, value in stated.items() if _is_float(value)}


def _is_float(value: Any) -> bool:
    """Return whether `value` is an int or float that float() converts without overflow; booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _peak_flag(bundle_id: str, data_type: str, stated: float, registered: float | None) -> dict[str, Any]:
    shown = "none" if registered is None else f"{registered:g}"
    explanation, hint = render("peak_tflops_mismatch", bundle=bundle_id, data_type=data_type, stated=f"{stated:g}", registered=shown)
    return {
        "code": "peak_tflops_mismatch", "bundle_id": bundle_id, "data_type": data_type,
        "stated": stated, "registered": registered, "explanation": explanation, "hint": hint,
    }


# Where workloads sit in the pack -------------------------------------------


def workload_placements(pack: RulePack) -> dict[str, tuple[str, int]]:
    """Return each required workload id with the track and lowest level that first require it, in pack order."""
    placements: dict[str, tuple[str, int]] = {}
    for track_name, track in pack.data.get("tracks", {}).items():
        for level in sorted(int(key) for key in (track.get("levels") or {})):
            for workload_id in _level_spec(track, level).get("workloads", []):
                placements.setdefault(workload_id, (track_name, level))
    return placements


def _level_spec(track: dict, level: int) -> dict:
    levels = track.get("levels") or {}
    return levels.get(level, levels.get(str(level), {})) or {}


def throughput_bound(pack: RulePack, track_name: str, level: int) -> float | None:
    """Return the throughput_ratio_min that applies at `level`: the one set at the highest level up to it."""
    track = pack.data["tracks"][track_name]
    bound = None
    for candidate in sorted(int(key) for key in (track.get("levels") or {})):
        if candidate <= level and "throughput_ratio_min" in _level_spec(track, candidate):
            bound = float(_level_spec(track, candidate)["throughput_ratio_min"])
    return bound


def _target_level(bundle: VerifiedBundle) -> int:
    level = (bundle.manifest.get("run") or {}).get("level")
    return level if isinstance(level, int) and level > 0 else 1


# One workload --------------------------------------------------------------


def _judge_workload(bundle, references, pack, workload_id, card_peaks, human, bound) -> tuple[list[CriterionResult], dict | None]:
    """Judge every criterion of one workload; also return the comparison of its inputs with the reference's, when one was made."""
    spec = pack.workload(workload_id)
    built_in = [{"id": f"{workload_id}.fixed_hyperparameters", "metric": "fixed_hyperparameters"}]
    if has_run_length(spec):
        built_in.append({"id": f"{workload_id}.run_length", "metric": "run_length"})
    criteria = [*built_in, *spec.get("criteria", [])]
    blocker = _vendor_blocker(bundle, pack, workload_id)
    if blocker is not None:
        return [_label(item, workload_id, blocker) for item in criteria], None
    vendor = WorkloadRecords(bundle, workload_id)
    results = [_label(built_in[0], workload_id, check_fixed_hyperparameters(vendor, spec))]
    if len(built_in) > 1:
        results.append(_label(built_in[1], workload_id, check_run_length(vendor, spec)))
    reference, blocker, compared = _pick_reference(references, pack, workload_id, vendor)
    # One records object per side, so each record file is read and parsed once for all criteria.
    reference_records = WorkloadRecords(reference.bundle, workload_id) if reference is not None else None
    for item in criteria[len(built_in):]:
        outcome = blocker or _evaluate(item, workload_id, pack, vendor, reference, reference_records, card_peaks, human, bound)
        results.append(_label(item, workload_id, outcome))
    return results, compared


def _evaluate(item, workload_id, pack, vendor, reference, reference_records, card_peaks, human, bound) -> Outcome:
    context = CriterionContext(
        criterion=item, workload_id=workload_id, settings=pack.data.get("settings", {}),
        vendor=vendor, reference=reference_records,
        vendor_peaks=card_peaks, reference_peaks=reference.peaks, throughput_bound=bound, human=human,
    )
    return evaluate(context)


def _vendor_blocker(bundle: VerifiedBundle, pack: RulePack, workload_id: str) -> Outcome | None:
    """Return the outcome every criterion of the workload gets when the vendor side cannot be judged at all."""
    expected = {"name": pack.name, "sha256": pack.sha256}
    if bundle.rule_pack != expected:
        found = f"{bundle.rule_pack.get('name')} ({bundle.rule_pack.get('sha256', '')[:12]})"
        return Outcome(REFUSED, "rule_pack_mismatch", fields={"found": found, "expected": f"{pack.name} ({pack.sha256[:12]})"})
    records = WorkloadRecords(bundle, workload_id)
    if not records.exists() and not _planned_by_run(bundle, workload_id):
        return Outcome(PENDING, "workload_not_run", fields={"workload": workload_id}, details={"missing_workload": workload_id})
    if not records.exists():
        return Outcome(FAIL, "workload_missing", fields={"workload": workload_id}, details={"missing_workload": workload_id})
    status = _result_status(records)
    if status == "not_supported":
        return criteria_inference.not_supported_outcome(records)
    if status != "completed":
        return Outcome(FAIL, "workload_not_completed", fields={"workload": workload_id, "status": status, "status_zh": _status_zh(status)})
    return None


def _planned_by_run(bundle: VerifiedBundle, workload_id: str) -> bool:
    """Return whether the run's own plan (run.json `workloads`) names the workload; True when the run has no plan."""
    try:
        planned = bundle.read_json("run.json").get("workloads")
    except (BundleError, ValueError, AttributeError):
        return True
    return not isinstance(planned, list) or workload_id in planned


MISSING_RESULT, INVALID_RESULT = "missing result.json", "invalid result.json"
# Chinese texts of the statuses that _result_status returns in place of a recorded one. A recorded status,
# such as failed or crashed, is the agent's identifier and stays as it is.
STATUS_TEXTS_ZH = {MISSING_RESULT: "缺少 result.json", INVALID_RESULT: "result.json 无效"}


def _result_status(records: WorkloadRecords) -> str:
    try:
        result = records.result
    except (RecordsInvalid, BundleError):
        return MISSING_RESULT
    return str(result.get("status")) if isinstance(result, dict) else INVALID_RESULT


def _status_zh(status: str) -> str:
    return STATUS_TEXTS_ZH.get(status, status)


def _pick_reference(references: list[Reference], pack: RulePack, workload_id: str,
                    vendor: WorkloadRecords) -> tuple[Reference | None, Outcome | None, dict | None]:
    """Return the reference a workload is compared with, the outcome that blocks the comparison (or None) and the input comparison.

    The reference is chosen by `_choose_reference`. The checks then run in
    this order, and the first that finds a problem blocks: the reference is
    usable, both runs read inputs with the same digests, the run conditions
    are equal, and a workload that trains by epochs trained on the same
    batches in both runs.
    """
    candidates = [reference for reference in references if WorkloadRecords(reference.bundle, workload_id).exists()]
    if not candidates:
        return None, Outcome(REFUSED, "reference_missing", fields={"workload": workload_id}), None
    reference, choice = _choose_reference(candidates, pack, workload_id, vendor)
    problem = _reference_problem(reference, pack, workload_id)
    if problem:
        return reference, Outcome(REFUSED, "reference_unusable", fields={"problem": problem[0], "problem_zh": problem[1]}), None
    reference_records = WorkloadRecords(reference.bundle, workload_id)
    try:
        entries = compare_inputs(pack, workload_id, vendor, reference_records)
    except InputRecordsInvalid as error:
        if error.side == "reference":
            fields = {"problem": f"reference bundle {reference.bundle.bundle_id}: workload {workload_id} has invalid input records: {error}",
                      "problem_zh": f"参考结果包 {reference.bundle.bundle_id}：工作负载 {workload_id} 的输入记录无效：{error.problem_zh}"}
            return reference, Outcome(REFUSED, "reference_unusable", fields=fields), None
        fields = {"workload": workload_id, "problem": str(error), "problem_zh": error.problem_zh}
        return reference, Outcome(FAIL, "records_invalid", fields=fields), None
    compared = {
        "reference_bundle_id": reference.bundle.bundle_id,
        "reference_choice": choice,
        "inputs": [entry.to_dict() for entry in entries],
    }
    blocker = input_outcome(entries, workload_id)
    if blocker is not None:
        return reference, blocker, compared
    try:
        differences = compare_conditions(vendor, reference_records)
    except RecordsInvalid as error:
        # The reference's config.json was read by _reference_problem above, so the invalid one is the vendor's.
        fields = {"workload": workload_id, "problem": str(error), "problem_zh": error.problem_zh}
        return reference, Outcome(FAIL, "records_invalid", fields=fields), compared
    if differences:
        return reference, Outcome(REFUSED, "reference_mismatch", fields={"differences": "; ".join(differences)}, details={"differences": differences}), compared
    return reference, epoch_batches_outcome(pack.workload(workload_id), vendor, reference_records), compared


def _choose_reference(candidates: list[Reference], pack: RulePack, workload_id: str,
                      vendor: WorkloadRecords) -> tuple[Reference, dict[str, Any]]:
    """Return the reference to compare a workload with, out of those that contain it, and the reason as the verdict records it.

    With one candidate that one is used, whatever its state. With several,
    the first usable one whose inputs all equal the vendor's (and the pack's
    pin) is used. When none has such inputs, the first usable one with
    readable input records is used, else the first one, so the verdict shows
    why the comparison fails.
    """
    if len(candidates) == 1:
        return candidates[0], _choice("only_reference", candidates[0], candidates, workload_id)
    comparisons = [(reference, _comparable_inputs(reference, pack, workload_id, vendor)) for reference in candidates]
    comparable = [(reference, entries) for reference, entries in comparisons if entries is not None]
    for reference, entries in comparable:
        if input_outcome(entries, workload_id) is None:
            return reference, _choice("inputs_match", reference, candidates, workload_id)
    chosen = comparable[0][0] if comparable else candidates[0]
    return chosen, _choice("no_inputs_match", chosen, candidates, workload_id)


def _comparable_inputs(reference: Reference, pack: RulePack, workload_id: str, vendor: WorkloadRecords) -> list | None:
    """Return the input comparison with a usable reference, or None when the reference is unusable or either side's input records are invalid."""
    if _reference_problem(reference, pack, workload_id):
        return None
    try:
        return compare_inputs(pack, workload_id, vendor, WorkloadRecords(reference.bundle, workload_id))
    except InputRecordsInvalid:
        return None


def _choice(code: str, chosen: Reference, candidates: list[Reference], workload_id: str) -> dict[str, Any]:
    explanation = render_reference_choice(code, workload=workload_id, reference=chosen.bundle.bundle_id, count=len(candidates))
    return {"code": code, "candidates": [reference.bundle.bundle_id for reference in candidates], "explanation": explanation}


def _reference_problem(reference: Reference, pack: RulePack, workload_id: str) -> tuple[str, str] | None:
    """Return why `reference` cannot be used for `workload_id`, as (English, Chinese), or None when it can."""
    bundle_id = reference.bundle.bundle_id
    found = reference.bundle.rule_pack
    if found != {"name": pack.name, "sha256": pack.sha256}:
        pack_label = f"{found.get('name')} ({found.get('sha256', '')[:12]})"
        return (f"reference bundle {bundle_id} was made with rule pack {pack_label}",
                f"参考结果包 {bundle_id} 是用规则包 {pack_label} 生成的")
    status = _result_status(WorkloadRecords(reference.bundle, workload_id))
    if status != "completed":
        return (f"reference bundle {bundle_id}: workload {workload_id} has status {status}",
                f"参考结果包 {bundle_id}：工作负载 {workload_id} 的状态是 {_status_zh(status)}")
    try:
        mismatched = fixed_differences(WorkloadRecords(reference.bundle, workload_id), pack.workload(workload_id))
    except (RecordsInvalid, BundleError) as error:
        return (f"reference bundle {bundle_id}: workload {workload_id} has unreadable records: {error}",
                f"参考结果包 {bundle_id}：工作负载 {workload_id} 的记录无法读取：{problem_zh(error)}")
    if mismatched:
        return (f"reference bundle {bundle_id}: fixed hyperparameters differ from the pack (reference / pack): {', '.join(mismatched)}",
                f"参考结果包 {bundle_id}：固定超参数与规则包不同（参考运行 / 规则包）：{'，'.join(mismatched)}")
    return reference_epochs_problem(WorkloadRecords(reference.bundle, workload_id), pack.workload(workload_id))


def _label(item: dict, workload_id: str, outcome: Outcome) -> CriterionResult:
    explanation, hint = outcome.messages()
    details = {"code": outcome.code, **outcome.details}
    return CriterionResult(item["id"], workload_id, item.get("metric", ""), outcome.status, outcome.measured, outcome.reference, outcome.bound, explanation, hint, details)


# Run conditions ------------------------------------------------------------


def check_fixed_hyperparameters(vendor: WorkloadRecords, spec: dict) -> Outcome:
    """Fail when a hyperparameter the pack fixes has another value in the vendor's resolved config."""
    try:
        differences = fixed_differences(vendor, spec)
    except (RecordsInvalid, BundleError) as error:
        return Outcome(FAIL, "records_invalid", fields={"workload": vendor.workload_id, "problem": str(error), "problem_zh": problem_zh(error)})
    fixed = spec.get("hyperparameters", {}).get("fixed", {})
    if differences:
        return Outcome(FAIL, "fixed_hyperparameters_fail", bound=fixed, fields={"keys": ", ".join(differences)}, details={"differences": differences})
    return Outcome(PASS, "fixed_hyperparameters_pass", bound=fixed)


def fixed_differences(records: WorkloadRecords, spec: dict) -> list[str]:
    """Return 'key RUN / PACK' for each fixed hyperparameter that differs or is missing ('-' for a missing value).

    The text contains no words, so that messages in either language can label the two sides.
    """
    fixed = spec.get("hyperparameters", {}).get("fixed", {})
    resolved = _resolved_hyperparameters(records.config)
    differences = []
    for key, expected in fixed.items():
        if key not in resolved or not _same_value(resolved[key], expected):
            differences.append(f"{key} {_shown(resolved, key)} / {expected!r}")
    return differences


def _shown(values: dict, key: str) -> str:
    return repr(values[key]) if key in values else "-"


def _resolved_hyperparameters(config: Any) -> dict:
    if not isinstance(config, dict):
        raise RecordsInvalid("config.json is not an object", "config.json 不是 JSON 对象")
    hyperparameters = _config_section(config.get("hyperparameters"), "hyperparameters")
    merged = {key: value for key, value in hyperparameters.items() if key not in ("fixed", "free")}
    merged.update(_config_section(hyperparameters.get("free"), "hyperparameters.free"))
    merged.update(_config_section(hyperparameters.get("fixed"), "hyperparameters.fixed"))
    return merged


def _config_section(value: Any, key: str) -> dict:
    """Return a section of config.json: None is empty, and a value that is not an object raises RecordsInvalid naming `key` and the value."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordsInvalid(f"config.json has {key} {value!r}, not an object", f"config.json 的 {key} 是 {value!r}，不是 JSON 对象")
    return value


def _same_value(found: Any, expected: Any) -> bool:
    if isinstance(found, bool) or isinstance(expected, bool):
        return found is expected
    if isinstance(found, (int, float)) and isinstance(expected, (int, float)):
        try:
            return math.isclose(found, expected, rel_tol=1e-12, abs_tol=0.0)
        except OverflowError:  # an integer beyond the float range, which equals only the same integer
            return found == expected
    return found == expected


def compare_conditions(vendor: WorkloadRecords, reference: WorkloadRecords) -> list[str]:
    """Name every run condition (sequence length, global batch, measurement protocol) that differs.

    The digests of data sets, tokenizer and checkpoint are compared before
    this, by certification.inputs.
    """
    vendor_config, reference_config = vendor.config, reference.config
    differences = []
    vendor_hyper, reference_hyper = _resolved_hyperparameters(vendor_config), _resolved_hyperparameters(reference_config)
    for key in COMPARED_HYPERPARAMETERS:
        if not _same_value(vendor_hyper.get(key), reference_hyper.get(key)):
            differences.append(f"{key} {_shown(vendor_hyper, key)} / {_shown(reference_hyper, key)}")
    differences.extend(_protocol_differences(vendor_config.get("protocol"), reference_config.get("protocol")))
    return differences


def _protocol_differences(vendor: Any, reference: Any) -> list[str]:
    """Name each measurement-protocol key (such as the inference load model) that differs between the sides."""
    if vendor == reference:
        return []
    if not isinstance(vendor, dict) or not isinstance(reference, dict):
        return [f"protocol {vendor!r} / {reference!r}"]
    keys = sorted(set(vendor) | set(reference))
    return [f"protocol.{key} {_shown(vendor, key)} / {_shown(reference, key)}" for key in keys if vendor.get(key) != reference.get(key)]


# Levels --------------------------------------------------------------------


def derive_levels(pack: RulePack, results: list[CriterionResult]) -> dict[str, dict[str, Any]]:
    """Return per track the highest level whose requirements all hold, and what blocks the next one.

    Levels are cumulative: level N needs every criterion of levels 1..N, with
    the throughput ratio measured against level N's bound. A track with
    `requires_track` also needs that track at level N.
    """
    tracks = pack.data.get("tracks", {})
    by_workload: dict[str, list[CriterionResult]] = {}
    for result in results:
        by_workload.setdefault(result.workload, []).append(result)
    reached: dict[str, dict[str, Any]] = {}
    for name in tracks:
        _track_level(pack, name, by_workload, reached, ())
    return {name: reached[name] for name in tracks}


def _track_level(pack, name, by_workload, reached, visiting) -> dict[str, Any]:
    if name in reached:
        return reached[name]
    if name in visiting:
        raise ValueError(f"rule pack tracks require each other in a cycle: {' -> '.join((*visiting, name))}")
    track = pack.data["tracks"][name]
    required = track.get("requires_track")
    required_level = _track_level(pack, required, by_workload, reached, (*visiting, name))["level"] if required else None
    levels = sorted(int(key) for key in (track.get("levels") or {}))
    level, gap = 0, []
    for candidate in levels:
        gap = _level_gap(pack, name, candidate, by_workload)
        if required and required_level < candidate:
            gap.append({"requires_track": required, "level": candidate, "reached": required_level})
        if gap:
            break
        level = candidate
    reached[name] = {"level": level, "max_level": max(levels, default=0), "gap": gap if level < max(levels, default=0) else []}
    return reached[name]


def _level_gap(pack: RulePack, track_name: str, level: int, by_workload: dict[str, list[CriterionResult]]) -> list[dict[str, Any]]:
    track = pack.data["tracks"][track_name]
    bound = throughput_bound(pack, track_name, level)
    gap = []
    for candidate in sorted(int(key) for key in track["levels"]):
        if candidate > level:
            break
        for workload_id in _level_spec(track, candidate).get("workloads", []):
            for result in by_workload.get(workload_id, []):
                if not _passes_at(result, bound):
                    gap.append({
                        "level": level, "criterion": result.id, "workload": workload_id, "status": result.status,
                        "code": result.details.get("code"), "data_type": pack.workload(workload_id).get("data_type"),
                    })
    return gap


def _passes_at(result: CriterionResult, bound: float | None) -> bool:
    if result.metric in ("throughput_ratio", "qps_per_tflops_ratio") and "ratio" in result.details and bound is not None:
        return result.details["ratio"] >= bound
    return result.status in PASSING


def _json_ready(value: Any) -> Any:
    """Return `value` with non-finite floats replaced by their names, so strict JSON can hold it."""
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value
