"""Loading rule packs: the standard as versioned YAML data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

RULEPACK_DIR = Path(__file__).parent / "rulepacks"


class RulePackError(ValueError):
    def __init__(self, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.code = code
        self.hint = hint


@dataclass(frozen=True)
class RulePack:
    """One parsed rule pack; `sha256` is the hash of the file's exact bytes."""

    name: str
    sha256: str
    data: dict[str, Any]
    text: str

    @property
    def reference_kind(self) -> str:
        return self.data["reference_kind"]

    def workload(self, workload_id: str) -> dict[str, Any]:
        return self.data["workloads"][workload_id]


def available_rule_packs() -> list[str]:
    return sorted(path.stem for path in RULEPACK_DIR.glob("*.yaml"))


def parse_rule_pack(raw: bytes) -> RulePack:
    """Parse rule pack bytes; the name comes from its `id` and `version`."""
    data = yaml.safe_load(raw.decode("utf-8"))
    if not isinstance(data, dict) or "id" not in data or "version" not in data:
        raise RulePackError("rule_pack_invalid", "the rule pack has no 'id' and 'version' at its top level")
    return RulePack(
        name=f"{data['id']}-{data['version']}",
        sha256=hashlib.sha256(raw).hexdigest(),
        data=data,
        text=raw.decode("utf-8"),
    )


def load_rule_pack(name: str) -> RulePack:
    """Load a shipped rule pack by name, such as `demo-2026.1`."""
    path = RULEPACK_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_rule_packs()) or "none"
        raise RulePackError(
            "rule_pack_not_found",
            f"rule pack {name!r} not found in {RULEPACK_DIR}",
            f"use one of: {known}",
        )
    return parse_rule_pack(path.read_bytes())


# Validation ------------------------------------------------------------------

SCHEMA_PATH = Path(__file__).parent / "schema" / "rulepack.schema.json"


@dataclass(frozen=True)
class RulePackIssue:
    """One problem in a rule pack: the path to the value (such as `workloads/sft-llama/model`) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def validate_rule_pack(data: Any) -> list[RulePackIssue]:
    """Return every schema and cross-reference problem in parsed rule pack data; an empty list means valid."""
    normalized = _string_keys(data)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    issues = [RulePackIssue(_path(error.absolute_path), error.message) for error in validator.iter_errors(normalized)]
    if not issues:
        issues.extend(_reference_issues(normalized))
    return sorted(issues, key=lambda issue: issue.path)


def _string_keys(value: Any) -> Any:
    """Return `value` with mapping keys as strings, because YAML reads level keys such as `1:` as integers."""
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


def _path(parts: Any) -> str:
    return "/".join(str(part) for part in parts) or "(top level)"


def _reference_issues(data: dict) -> list[RulePackIssue]:
    """Check that every name a pack uses is defined in it and that the settings agree with each other."""
    issues = []
    for workload_id, workload in data["workloads"].items():
        issues.extend(_workload_issues(data, workload_id, workload))
    for track_name, track in data["tracks"].items():
        issues.extend(_track_issues(data, track_name, track))
    issues.extend(_settings_issues(data["settings"]))
    issues.extend(_duplicate_criterion_issues(data["workloads"]))
    return issues


def _workload_issues(data: dict, workload_id: str, workload: dict) -> list[RulePackIssue]:
    where = f"workloads/{workload_id}"
    issues = []
    if workload["model"] not in data["models"]:
        issues.append(RulePackIssue(f"{where}/model", f"unknown model {workload['model']!r}"))
    if "init_from" in workload and workload["init_from"] not in data["workloads"]:
        issues.append(RulePackIssue(f"{where}/init_from", f"unknown workload {workload['init_from']!r}"))
    for role, names in workload["datasets"].items():
        for name in [names] if isinstance(names, str) else names:
            if name not in data["datasets"]:
                issues.append(RulePackIssue(f"{where}/datasets/{role}", f"unknown dataset {name!r}"))
    overlap = set(workload["hyperparameters"]["fixed"]) & set(workload["hyperparameters"].get("free", {}))
    if overlap:
        issues.append(RulePackIssue(f"{where}/hyperparameters", f"both fixed and free: {', '.join(sorted(overlap))}"))
    return issues


def _track_issues(data: dict, track_name: str, track: dict) -> list[RulePackIssue]:
    issues = []
    required = track.get("requires_track")
    if required is not None and (required not in data["tracks"] or required == track_name):
        issues.append(RulePackIssue(f"tracks/{track_name}/requires_track", f"unknown or circular track {required!r}"))
    for level, spec in (track.get("levels") or {}).items():
        for workload_id in spec["workloads"]:
            if workload_id not in data["workloads"]:
                issues.append(RulePackIssue(f"tracks/{track_name}/levels/{level}/workloads", f"unknown workload {workload_id!r}"))
    return issues


def _settings_issues(settings: dict) -> list[RulePackIssue]:
    issues = []
    loss = settings["loss_alignment"]
    if loss["steps"] % loss["window"]:
        issues.append(RulePackIssue("settings/loss_alignment/steps", f"{loss['steps']} steps do not split into windows of {loss['window']}"))
    first, last = settings["throughput"]["mean_steps"]
    if first > last:
        issues.append(RulePackIssue("settings/throughput/mean_steps", f"first step {first} is after last step {last}"))
    return issues


def _duplicate_criterion_issues(workloads: dict) -> list[RulePackIssue]:
    seen: dict[str, str] = {}
    issues = []
    for workload_id, workload in workloads.items():
        for index, item in enumerate(workload["criteria"]):
            if item["id"] in seen:
                issues.append(RulePackIssue(f"workloads/{workload_id}/criteria/{index}/id", f"criterion id {item['id']!r} is also used by {seen[item['id']]}"))
            seen.setdefault(item["id"], workload_id)
    return issues
