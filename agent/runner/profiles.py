"""Run profiles: which rule pack, tracks, level and device a `python -m agent run` uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.errors import AgentError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
PROFILE_KEYS = {"rule_pack", "tracks", "level", "device", "vendor", "card"}
OPTIONAL_PROFILE_KEYS = {"workloads"}


@dataclass(frozen=True)
class Profile:
    name: str
    rule_pack: str
    tracks: list[str]
    level: int
    device: str
    vendor: str
    card_model: str
    card_serial: str
    workloads: list[str] | None = None  # run only these workloads of the plan (with what they start from)


def available_profiles() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


def load_profile(name: str) -> Profile:
    """Load `agent/profiles/<name>.yaml`, raising AgentError for an unknown name or an invalid file."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise AgentError(
            "profile_not_found",
            f"run profile {name!r} not found in {PROFILE_DIR}",
            f"use one of: {', '.join(available_profiles())}",
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = _profile_problems(data)
    if problems:
        raise AgentError("profile_invalid", f"run profile {path} is invalid: {problems}",
                         f"expected the keys {', '.join(sorted(PROFILE_KEYS))}")
    return Profile(
        name=name,
        rule_pack=data["rule_pack"],
        tracks=list(data["tracks"]),
        level=int(data["level"]),
        device=data["device"],
        vendor=data["vendor"],
        card_model=data["card"]["model"],
        card_serial=data["card"]["serial"],
        workloads=list(data["workloads"]) if "workloads" in data else None,
    )


def _profile_problems(data) -> str:
    if not isinstance(data, dict):
        return "the file is not a mapping"
    missing = PROFILE_KEYS - data.keys()
    unknown = data.keys() - PROFILE_KEYS - OPTIONAL_PROFILE_KEYS
    if missing:
        return f"missing keys {sorted(missing)}"
    if unknown:
        return f"unknown keys {sorted(unknown)}"
    if not isinstance(data["card"], dict) or {"model", "serial"} - data["card"].keys():
        return "'card' needs 'model' and 'serial'"
    if "workloads" in data and (not isinstance(data["workloads"], list) or not all(isinstance(item, str) for item in data["workloads"])):
        return "'workloads' must be a list of workload ids"
    return ""
