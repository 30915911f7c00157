"""The vendor's `--set KEY=VALUE` hyperparameters: accepted only for keys the rule pack marks free."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from certification.rulepack import RulePack

from agent.errors import AgentError
from agent.i18n import _


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """Turn `KEY=VALUE` strings into a dict; VALUE is read as YAML, so `2` is an int and `true` a bool."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise AgentError("set_invalid", _("--set {value} is not of the form KEY=VALUE").format(value=repr(assignment)),
                             _("write it as, for example, --set per_device_train_batch_size=2"))
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[key.strip()] = text
    return values


def check_overrides(pack: RulePack, workload_ids: list[str], overrides: dict[str, Any]) -> None:
    """Raise AgentError naming the first key that no planned workload marks free, or a value of the wrong type."""
    free = _keys(pack, workload_ids, "free")
    fixed = _keys(pack, workload_ids, "fixed")
    for key, value in overrides.items():
        if key in free:
            _check_type(pack, key, value, free[key])
            continue
        allowed = ", ".join(sorted(free)) or _("none")
        if key in fixed:
            raise AgentError("hyperparameter_fixed",
                             _("{key} is fixed by rule pack {pack} at {value}; a vendor may not change it").format(
                                 key=key, pack=pack.name, value=repr(fixed[key])),
                             _("remove --set {key}=...; the keys you may set are: {keys}").format(key=key, keys=allowed))
        close = difflib.get_close_matches(key, list(free), n=1)
        hint = _("the keys you may set are: {keys}").format(keys=allowed)
        if close:
            hint = _("did you mean {key}? the keys you may set are: {keys}").format(key=close[0], keys=allowed)
        raise AgentError("hyperparameter_unknown",
                         _("{key} is not a hyperparameter of the planned workloads of rule pack {pack}").format(key=key, pack=pack.name),
                         hint)


def _keys(pack: RulePack, workload_ids: list[str], section: str) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for workload_id in workload_ids:
        keys.update(pack.workload(workload_id)["hyperparameters"].get(section) or {})
    return keys


def _check_type(pack: RulePack, key: str, value: Any, default: Any) -> None:
    expected = type(default)
    if isinstance(default, bool) or isinstance(value, bool):
        valid = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, int):
        valid = isinstance(value, int) and value >= 0
    elif isinstance(default, float):
        valid = isinstance(value, (int, float))
    else:
        valid = default is None or isinstance(value, expected)
    if not valid:
        raise AgentError("hyperparameter_invalid",
                         _("{key}={value} is invalid: rule pack {pack} expects a {type} such as {example}").format(
                             key=key, value=repr(value), pack=pack.name, type=expected.__name__, example=repr(default)),
                         _("pass --set {key}=<{type}>").format(key=key, type=expected.__name__))


def check_micro_batch(pack: RulePack, workload_ids: list[str], overrides: dict[str, Any], cards: int) -> None:
    """Raise AgentError when a planned workload's global batch does not split into the chosen micro-batches."""
    for workload_id in workload_ids:
        hyperparameters = pack.workload(workload_id)["hyperparameters"]
        fixed = hyperparameters["fixed"]
        free = {**(hyperparameters.get("free") or {}), **overrides}
        if "global_batch_size" not in fixed or "per_device_train_batch_size" not in free:
            continue
        model_ranks = int(free.get("tensor_parallel_degree", 1)) * int(free.get("pipeline_parallel_degree", 1))
        data_ranks = max(1, cards // model_ranks)
        micro = int(free["per_device_train_batch_size"])
        if micro < 1 or int(fixed["global_batch_size"]) % (micro * data_ranks):
            raise AgentError(
                "micro_batch_invalid",
                _("{workload}: global_batch_size {global_batch} is not a multiple of "
                  "per_device_train_batch_size {micro} x {ranks} data-parallel ranks").format(
                    workload=workload_id, global_batch=fixed["global_batch_size"], micro=micro, ranks=data_ranks),
                _("choose a per_device_train_batch_size that divides the global batch per data-parallel rank"),
            )
