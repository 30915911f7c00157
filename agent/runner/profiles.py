"""Run profiles: which rule pack, tracks, level and device a `python -m agent run` uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from certification.rulepack import _not_utf8_message, _yaml_error_message, _yaml_error_values

from agent.errors import AgentError, os_error_reason, translate_core_message
from agent.i18n import _

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


def profile_path(name: str) -> Path:
    """Return the file of a profile: `name` itself when it ends in .yaml or .yml or contains a path separator, else agent/profiles/<name>.yaml."""
    if name.endswith((".yaml", ".yml")) or "/" in name or os.sep in name:
        return Path(name).expanduser()
    return PROFILE_DIR / f"{name}.yaml"


def load_profile(name: str) -> Profile:
    """Load a profile by name (agent/profiles/<name>.yaml) or by path, raising AgentError for a missing or invalid file."""
    path = profile_path(name)
    if path.parent != PROFILE_DIR and not path.is_file():
        raise AgentError("profile_not_found", _("run profile file {path} does not exist").format(path=path),
                         _("pass the path of a YAML profile, or the name of one in {folder}: {names}").format(
                             folder=PROFILE_DIR, names=", ".join(available_profiles())))
    if not path.is_file():
        raise AgentError(
            "profile_not_found",
            _("run profile {name} not found in {folder}").format(name=repr(name), folder=PROFILE_DIR),
            _("use one of: {names}").format(names=", ".join(available_profiles())),
        )
    data = _read_profile_data(path)
    problems = _profile_problems(data)
    if problems:
        raise AgentError("profile_invalid", _("run profile {path} is invalid: {problems}").format(path=path, problems=problems),
                         _("expected the keys {keys}").format(keys=", ".join(sorted(PROFILE_KEYS))))
    return Profile(
        name=path.stem,
        rule_pack=data["rule_pack"],
        tracks=list(data["tracks"]),
        level=data["level"],
        device=data["device"],
        vendor=data["vendor"],
        card_model=data["card"]["model"],
        card_serial=data["card"]["serial"],
        workloads=list(data["workloads"]) if "workloads" in data else None,
    )


def _read_profile_data(path: Path):
    """Parse the profile file at `path` as YAML, raising AgentError for an unreadable file, bytes that are not UTF-8, or invalid YAML.

    The problem is described as validate-pack describes it for a rule pack, with the line and column or the invalid byte.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise AgentError("profile_unreadable", _("cannot read run profile {path}: {reason}").format(path=path, reason=os_error_reason(error)),
                         _("check that the file can be read")) from None
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        values = {"byte": f"0x{raw[error.start]:02x}", "offset": str(error.start)}
        problem = translate_core_message("file_not_utf8", _not_utf8_message(raw, error) + "; save the file as UTF-8", values)
        hint = _("save the profile as UTF-8 text")
    except yaml.YAMLError as error:
        problem = translate_core_message("yaml_invalid", _yaml_error_message(error), _yaml_error_values(error))
        hint = _("fix the YAML at that line and column")
    raise AgentError("profile_invalid", _("run profile {path} is invalid: {problems}").format(path=path, problems=problem), hint)


def _profile_problems(data) -> str:
    """Return every problem of a profile's keys, joined with "; ", or "" when there is none."""
    if not isinstance(data, dict):
        return _("the file is not a mapping")
    problems = []
    missing = PROFILE_KEYS - data.keys()
    unknown = data.keys() - PROFILE_KEYS - OPTIONAL_PROFILE_KEYS
    if missing:
        problems.append(_("missing keys: {keys}").format(keys=", ".join(sorted(missing))))
    if unknown:
        problems.append(_("unknown keys: {keys}").format(keys=", ".join(sorted(str(key) for key in unknown))))
    if "card" in data and (not isinstance(data["card"], dict) or {"model", "serial"} - data["card"].keys()):
        problems.append(_("'card' needs 'model' and 'serial'"))
    if "level" in data and (not isinstance(data["level"], int) or isinstance(data["level"], bool)):
        problems.append(_("'level' must be a whole number, such as 1, but it is {value}").format(value=repr(data["level"])))
    if "workloads" in data and (not isinstance(data["workloads"], list) or not all(isinstance(item, str) for item in data["workloads"])):
        problems.append(_("'workloads' must be a list of workload ids"))
    return "; ".join(problems)


def profiles_planning(pack_name: str, workload_ids: list[str]) -> dict[str, list[str]]:
    """Map each of `workload_ids` to the shipped profiles of rule pack `pack_name` whose plan contains it (empty when none does)."""
    from certification.rulepack import load_rule_pack

    from agent.runner.plan import plan_workloads

    found: dict[str, list[str]] = {workload_id: [] for workload_id in workload_ids}
    for name in available_profiles():
        profile = load_profile(name)
        if profile.rule_pack != pack_name:
            continue
        planned = plan_workloads(load_rule_pack(pack_name), profile.tracks, profile.level, profile.workloads)
        for workload_id in workload_ids:
            if workload_id in planned:
                found[workload_id].append(name)
    return found
