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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from certification.bundle import VerifiedBundle
from certification.criteria import FAIL, NOT_APPLICABLE, PASS, REFUSED, CriterionContext, Outcome, RecordsInvalid, WorkloadRecords, evaluate
from certification.errors import BundleError
from certification.records import encode_float
from certification.rulepack import RulePack

# Run conditions that must be equal on both sides for a comparison to mean anything.
COMPARED_HYPERPARAMETERS = ("max_seq_length", "global_batch_size")
PASSING = (PASS, NOT_APPLICABLE)


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
    """The outcome of `judge`: the rule pack used, every criterion and the level per track."""

    rule_pack: dict[str, str]
    reference_kind: str
    bundle_id: str
    reference_bundle_ids: list[str]
    criteria: list[CriterionResult]
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)

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
            "criteria": [result.to_dict() for result in self.criteria],
            "tracks": _json_ready(self.tracks),
        }


def judge(
    bundle: VerifiedBundle,
    references: Sequence[Reference | tuple[VerifiedBundle, dict[str, float]]],
    pack: RulePack,
    card_peaks: dict[str, float],
    human: dict[str, dict] | None = None,
) -> Verdict:
    """Judge `bundle` against `references` under `pack`.

    `card_peaks` are the vendor card's peak dense TFLOPS by data type (such as
    {"bf16": 312.0}); each reference carries its own card's peaks. `human`
    maps a human_gsb criterion id to {"good", "same", "bad", "signed_off_by"}.
    """
    reference_list = [item if isinstance(item, Reference) else Reference(*item) for item in references]
    target_level = _target_level(bundle)
    placements = workload_placements(pack)
    results = []
    for workload_id, (track, _level) in placements.items():
        bound = throughput_bound(pack, track, target_level)
        results.extend(_judge_workload(bundle, reference_list, pack, workload_id, card_peaks, human, bound))
    return Verdict(
        rule_pack={"name": pack.name, "sha256": pack.sha256},
        reference_kind=pack.reference_kind,
        bundle_id=bundle.bundle_id,
        reference_bundle_ids=[reference.bundle.bundle_id for reference in reference_list],
        criteria=results,
        tracks=derive_levels(pack, results),
    )


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


def _judge_workload(bundle, references, pack, workload_id, card_peaks, human, bound) -> list[CriterionResult]:
    spec = pack.workload(workload_id)
    criteria = [{"id": f"{workload_id}.fixed_hyperparameters", "metric": "fixed_hyperparameters"}, *spec.get("criteria", [])]
    blocker = _vendor_blocker(bundle, pack, workload_id)
    if blocker is not None:
        return [_label(item, workload_id, blocker) for item in criteria]
    vendor = WorkloadRecords(bundle, workload_id)
    results = [_label(criteria[0], workload_id, check_fixed_hyperparameters(vendor, spec))]
    reference, blocker = _pick_reference(references, pack, workload_id, vendor)
    for item in criteria[1:]:
        outcome = blocker or _evaluate(item, workload_id, pack, vendor, reference, card_peaks, human, bound)
        results.append(_label(item, workload_id, outcome))
    return results


def _evaluate(item, workload_id, pack, vendor, reference, card_peaks, human, bound) -> Outcome:
    context = CriterionContext(
        criterion=item, workload_id=workload_id, settings=pack.data.get("settings", {}),
        vendor=vendor, reference=WorkloadRecords(reference.bundle, workload_id),
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
    if not records.exists():
        return Outcome(FAIL, "workload_missing", fields={"workload": workload_id}, details={"missing_workload": workload_id})
    status = _result_status(records)
    if status != "completed":
        return Outcome(FAIL, "workload_not_completed", fields={"workload": workload_id, "status": status})
    return None


def _result_status(records: WorkloadRecords) -> str:
    try:
        result = records.result
    except (RecordsInvalid, BundleError):
        return "missing result.json"
    return str(result.get("status")) if isinstance(result, dict) else "invalid result.json"


def _pick_reference(references: list[Reference], pack: RulePack, workload_id: str, vendor: WorkloadRecords) -> tuple[Reference | None, Outcome | None]:
    candidates = [reference for reference in references if WorkloadRecords(reference.bundle, workload_id).exists()]
    if not candidates:
        return None, Outcome(REFUSED, "reference_missing", fields={"workload": workload_id})
    reference = candidates[0]
    problem = _reference_problem(reference, pack, workload_id)
    if problem:
        return reference, Outcome(REFUSED, "reference_unusable", fields={"problem": problem})
    differences = compare_conditions(vendor, WorkloadRecords(reference.bundle, workload_id))
    if differences:
        return reference, Outcome(REFUSED, "reference_mismatch", fields={"differences": "; ".join(differences)}, details={"differences": differences})
    return reference, None


def _reference_problem(reference: Reference, pack: RulePack, workload_id: str) -> str:
    found = reference.bundle.rule_pack
    if found != {"name": pack.name, "sha256": pack.sha256}:
        return f"reference bundle {reference.bundle.bundle_id} was made with rule pack {found.get('name')} ({found.get('sha256', '')[:12]})"
    status = _result_status(WorkloadRecords(reference.bundle, workload_id))
    if status != "completed":
        return f"reference workload {workload_id} has status {status}"
    try:
        mismatched = fixed_differences(WorkloadRecords(reference.bundle, workload_id), pack.workload(workload_id))
    except (RecordsInvalid, BundleError) as error:
        return f"reference workload {workload_id} has unreadable records: {error}"
    if mismatched:
        return f"reference fixed hyperparameters differ from the pack: {', '.join(mismatched)}"
    return ""


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
        return Outcome(FAIL, "records_invalid", fields={"workload": vendor.workload_id, "problem": str(error)})
    fixed = spec.get("hyperparameters", {}).get("fixed", {})
    if differences:
        return Outcome(FAIL, "fixed_hyperparameters_fail", bound=fixed, fields={"keys": ", ".join(differences)}, details={"differences": differences})
    return Outcome(PASS, "fixed_hyperparameters_pass", bound=fixed)


def fixed_differences(records: WorkloadRecords, spec: dict) -> list[str]:
    """Return 'key: found X, pack Y' for each fixed hyperparameter that differs or is missing."""
    fixed = spec.get("hyperparameters", {}).get("fixed", {})
    resolved = _resolved_hyperparameters(records.config)
    differences = []
    for key, expected in fixed.items():
        found = resolved.get(key, "(missing)")
        if not _same_value(found, expected):
            differences.append(f"{key}: found {found!r}, pack {expected!r}")
    return differences


def _resolved_hyperparameters(config: Any) -> dict:
    if not isinstance(config, dict):
        raise RecordsInvalid("config.json is not an object")
    hyperparameters = config.get("hyperparameters") or {}
    merged = {key: value for key, value in hyperparameters.items() if key not in ("fixed", "free")}
    merged.update(hyperparameters.get("free") or {})
    merged.update(hyperparameters.get("fixed") or {})
    return merged


def _same_value(found: Any, expected: Any) -> bool:
    if isinstance(found, bool) or isinstance(expected, bool):
        return found is expected
    if isinstance(found, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(found, expected, rel_tol=1e-12, abs_tol=0.0)
    return found == expected


def compare_conditions(vendor: WorkloadRecords, reference: WorkloadRecords) -> list[str]:
    """Name every run condition (dataset sha256, tokenizer, sequence length, global batch) that differs."""
    vendor_config, reference_config = vendor.config, reference.config
    differences = []
    vendor_sets, reference_sets = _dataset_digests(vendor_config), _dataset_digests(reference_config)
    for name in sorted(set(vendor_sets) | set(reference_sets)):
        if vendor_sets.get(name) != reference_sets.get(name):
            differences.append(f"dataset {name} sha256 {vendor_sets.get(name)} vs reference {reference_sets.get(name)}")
    vendor_tokenizer, reference_tokenizer = _tokenizer_identity(vendor_config), _tokenizer_identity(reference_config)
    if vendor_tokenizer != reference_tokenizer:
        differences.append(f"tokenizer {vendor_tokenizer} vs reference {reference_tokenizer}")
    vendor_hyper, reference_hyper = _resolved_hyperparameters(vendor_config), _resolved_hyperparameters(reference_config)
    for key in COMPARED_HYPERPARAMETERS:
        if not _same_value(vendor_hyper.get(key), reference_hyper.get(key)):
            differences.append(f"{key} {vendor_hyper.get(key)!r} vs reference {reference_hyper.get(key)!r}")
    return differences


def _dataset_digests(config: dict) -> dict[str, str]:
    """Collect {name: sha256} from every dataset record under config["datasets"], at any depth."""
    found: dict[str, str] = {}
    for record in _walk(config.get("datasets")):
        if isinstance(record.get("name"), str) and "sha256" in record:
            found[record["name"]] = record["sha256"]
    return found


def _walk(value: Any) -> Iterable[dict]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _walk(child)
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child)


def _tokenizer_identity(config: dict) -> tuple[Any, Any]:
    tokenizer = config.get("tokenizer") or {}
    if not isinstance(tokenizer, dict):
        return (tokenizer, None)
    return (tokenizer.get("name"), tokenizer.get("sha256"))


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
                    gap.append({"level": level, "criterion": result.id, "workload": workload_id, "status": result.status})
    return gap


def _passes_at(result: CriterionResult, bound: float | None) -> bool:
    if result.metric == "throughput_ratio" and "ratio" in result.details and bound is not None:
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
