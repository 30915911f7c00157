"""The vendor's `--set KEY=VALUE` hyperparameters: accepted only for keys the rule pack marks free."""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable

import yaml

from certification.kind_hyperparameters import hyperparameter_problem, is_recorded_only
from certification.rulepack import RulePack

from agent.commands.validate_pack import hyperparameter_values
from agent.errors import AgentError, translate_core_message
from agent.i18n import _
from agent.inference import ENDPOINT_VARIABLE


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """Turn `KEY=VALUE` strings into a dict; VALUE is read as YAML, so `2` is an int and `true` a bool."""
    values: dict[str, Any] = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise AgentError("set_invalid", _("--set {value} is not of the form KEY=VALUE").format(value=repr(assignment)),
                             _("write it as, for example, --set per_device_train_batch_size=2"))
        if not text.strip():
            # YAML reads an empty text as null, which the type check would report as "null is invalid".
            raise AgentError("set_value_empty", _("--set {value} has no value after the equals sign").format(value=repr(assignment)),
                             _("write the value after the equals sign, such as --set {key}=2, or leave out --set {key} to use the rule pack's value").format(
                                 key=key.strip()))
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[key.strip()] = text
    return values


def check_overrides(pack: RulePack, workload_ids: list[str], overrides: dict[str, Any]) -> None:
    """Raise AgentError naming the first key that no planned workload marks free, or a value that is invalid.

    A value is invalid when its type differs from the pack's value, or when a planned workload that has the key
    free cannot run with it (the rules that validate-pack applies to the pack's own values).
    """
    free = _keys(pack, workload_ids, "free")
    fixed = _keys(pack, workload_ids, "fixed")
    for key, value in overrides.items():
        if key in free:
            _check_type(pack, key, value, free[key])
            _check_workload_kinds(pack, workload_ids, key, value)
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


def _check_workload_kinds(pack: RulePack, workload_ids: list[str], key: str, value: Any) -> None:
    """Raise AgentError when a planned workload that has `key` free does not read it, only records it, or cannot run with `value`.

    Apart from the recorded keys, this is the check that validate-pack runs on the pack's own values
    (certification.kind_hyperparameters). A pack may list a recorded key as free to describe the run,
    but a `--set` of it would change config.json and not the run.
    """
    for workload_id in workload_ids:
        spec = pack.workload(workload_id)
        if key not in (spec["hyperparameters"].get("free") or {}):
            continue
        if is_recorded_only(spec["kind"], key):
            raise AgentError(
                "hyperparameter_not_applied",
                _("--set {key}={value} would change nothing: the agent does not apply {key} to {kind} workloads such as "
                  "{workload}, and only records rule pack {pack}'s value in config.json").format(
                    key=key, value=_yaml_text(value), kind=spec["kind"], workload=workload_id, pack=pack.name),
                _("remove --set {key}=..., or leave {workload} out of this run with --workloads").format(
                    key=key, workload=workload_id))
        problem = hyperparameter_problem(workload_id, spec["kind"], key, value, _yaml_text(value))
        if problem is None:
            continue
        values = hyperparameter_values(problem.code, dict(problem.values))
        if problem.code == "hyperparameter_unread":
            hint = _("remove --set {key}=..., because rule pack {pack} marks it free for {workload}, which does not read it").format(
                key=key, pack=pack.name, workload=workload_id)
        else:
            hint = _("set {key} to {expected}, or leave {workload} out of this run with --workloads").format(
                key=key, expected=values["expected"], workload=workload_id)
        raise AgentError(problem.code, translate_core_message(problem.code, problem.message, values), hint)


def _keys(pack: RulePack, workload_ids: list[str], section: str) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for workload_id in workload_ids:
        keys.update(pack.workload(workload_id)["hyperparameters"].get(section) or {})
    return keys


def _workload_values(pack: RulePack, workload_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a workload's fixed and free values with the `--set` values of its own free keys applied, as it trains with them."""
    hyperparameters = pack.workload(workload_id)["hyperparameters"]
    free = dict(hyperparameters.get("free") or {})
    free.update({key: value for key, value in overrides.items() if key in free})
    return {**hyperparameters["fixed"], **free}


# Integer keys that count something there must be at least one of: parallel degrees, batch sizes,
# accumulated micro-batches and concurrent requests. Other integer keys accept 0 (such as batch_wait_ms).
POSITIVE_SUFFIXES = ("_degree", "batch_size")
POSITIVE_KEYS = ("gradient_accumulation_steps", "max_concurrency")
SHARDING_STAGE_RANGE = (0, 3)


def _value_rule(key: str, default: Any) -> tuple[str, Callable[[Any], bool]]:
    """Return the description of the values that a free key accepts and a test for them; the pack's value sets the type."""
    def is_integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if isinstance(default, bool):
        return _("true or false"), lambda value: isinstance(value, bool)
    if isinstance(default, int) and key == "sharding_stage":
        low, high = SHARDING_STAGE_RANGE
        return _("an integer from {low} to {high}").format(low=low, high=high), lambda value: is_integer(value) and low <= value <= high
    if isinstance(default, int) and (key.endswith(POSITIVE_SUFFIXES) or key in POSITIVE_KEYS):
        return _("a positive integer"), lambda value: is_integer(value) and value >= 1
    if isinstance(default, int):
        return _("a non-negative integer"), lambda value: is_integer(value) and value >= 0
    if isinstance(default, float):
        return _("a number"), lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return _("a string"), lambda value: isinstance(value, str)
    if default is None:
        return _("any value"), lambda value: True
    return _("a value of YAML type {type}").format(type=type(default).__name__), lambda value: isinstance(value, type(default))


def _check_type(pack: RulePack, key: str, value: Any, default: Any) -> None:
    rule, accepts = _value_rule(key, default)
    if accepts(value):
        return
    example = _yaml_text(default)
    raise AgentError("hyperparameter_invalid",
                     _("{key}={value} is invalid: {key} must be {rule}, such as the pack's {example}").format(
                         key=key, value=_yaml_text(value), rule=rule, example=example),
                     _("set {key} to {rule}, for example --set {key}={example} (rule pack {pack})").format(
                         key=key, rule=rule, example=example, pack=pack.name))


def _yaml_text(value: Any) -> str:
    """Return `value` as it is written after `--set KEY=` (YAML), such as true for True."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


# Workload kinds that PaddleNLP's Trainer trains, laying its processes out by these degrees (agent.workloads.training).
TRAINER_KINDS = ("pretrain", "sft", "lora")
DEGREE_KEYS = ("tensor_parallel_degree", "pipeline_parallel_degree", "sharding_parallel_degree")


def check_parallel_degrees(pack: RulePack, workload_ids: list[str], overrides: dict[str, Any], processes: int) -> None:
    """Raise AgentError when a trained workload's parallel degrees do not divide the run's processes.

    Each model copy spans tensor x pipeline x sharding processes, so their
    product must divide the process count. PaddleNLP 3.0.0b4 does not reject
    a product that does not fit: in one process it sets every degree to -1
    and trains plain data-parallel, which a run record would then misstate.
    A degree below 1 in the pack means PaddleNLP's default and is left out.
    """
    for workload_id in workload_ids:
        if pack.workload(workload_id)["kind"] not in TRAINER_KINDS:
            continue
        values = _workload_values(pack, workload_id, overrides)
        degrees = {key: int(values[key]) for key in DEGREE_KEYS if key in values and int(values[key]) >= 1}
        product = math.prod(degrees.values())
        if processes % product == 0:
            continue
        raise AgentError(
            "parallel_degrees_invalid",
            _("{workload}: {degrees} need {product} processes per model copy, which does not divide this run's process count, {processes}").format(
                workload=workload_id, degrees=" x ".join(f"{key} {value}" for key, value in degrees.items()),
                product=product, processes=processes),
            _("start a multiple of {product} processes, one per card, such as "
              "python -m paddle.distributed.launch --nproc_per_node {product} agent/__main__.py run ..., "
              "or lower the degrees with --set").format(product=product),
        )


def _describe_batch_split(values: dict[str, Any], data_ranks: int) -> str:
    """Name the data-parallel and sharding degrees whose product, `data_ranks`, splits the global batch.

    Every rank of a sharding group reads its own micro-batch. With sharding on
    and no sharding_parallel_degree, PaddleNLP 3.0.0b4 puts every data rank in
    one sharding group (TrainingArguments sets the degree to the process count
    over tensor x pipeline), so the data-parallel degree is 1.
    """
    stage = int(values.get("sharding_stage", 0) or 0)
    sharding_on = stage >= 1 or bool(str(values.get("sharding", "")).strip())
    sharding = int(values.get("sharding_parallel_degree", -1) or -1)
    if not sharding_on or data_ranks <= 1:
        return _("data-parallel {ranks}").format(ranks=data_ranks)
    if sharding < 1 or data_ranks % sharding:
        sharding = data_ranks
    return _("data-parallel {data} x sharding {sharding}").format(data=data_ranks // sharding, sharding=sharding)


def _micro_batch_hint(global_batch: int, data_ranks: int) -> str:
    """Return a hint naming the per_device_train_batch_size values that split `global_batch` over `data_ranks`, or stating that none does."""
    if global_batch % data_ranks:
        return _("no micro-batch fits, because {ranks} ranks do not divide global_batch_size {global_batch}: "
                 "start a process count whose data-parallel x sharding ranks divide it").format(ranks=data_ranks, global_batch=global_batch)
    per_rank = global_batch // data_ranks
    sizes = [size for size in range(1, per_rank + 1) if per_rank % size == 0]
    return _("set per_device_train_batch_size to one of {sizes}, which divide the {per_rank} samples per rank, "
             "such as --set per_device_train_batch_size={example}").format(
        sizes=", ".join(str(size) for size in sizes), per_rank=per_rank, example=sizes[-1])


def check_inference_degrees(pack: RulePack, workload_ids: list[str], overrides: dict[str, Any], endpoint: str | None) -> None:
    """Raise AgentError when an inference workload sets a parallel degree above 1 and the agent's own server would serve it.

    The agent's server runs the model in one process without tensor or
    pipeline parallelism, so a record of such a degree would claim a layout
    that did not run. With `endpoint` set, the load generator measures that
    server instead, which runs whatever layout its operator started it with.
    """
    if endpoint:
        return
    for workload_id in workload_ids:
        if pack.workload(workload_id)["kind"] != "infer":
            continue
        degrees = parallel_degrees_above_one(_workload_values(pack, workload_id, overrides))
        if not degrees:
            continue
        key, value = next(iter(degrees.items()))
        raise AgentError(
            "inference_parallel_unsupported",
            _("{workload}: {key} {value} cannot run on the agent's own inference server, "
              "which serves the model in one process without tensor or pipeline parallelism").format(
                workload=workload_id, key=key, value=value),
            _("serve the model with an OpenAI-compatible completions server that runs {key} {value} (such as FastDeploy's), "
              "set {variable} to its completions URL and run again; or run with --set {key}=1, "
              "which also applies to the training workloads that have this key").format(
                key=key, value=value, variable=ENDPOINT_VARIABLE),
        )


def check_sharding_on_device(pack: RulePack, workload_ids: list[str], overrides: dict[str, Any], device: str,
                             processes: int) -> None:
    """Raise AgentError when a trained workload requests sharding stage 3 with offload on the CPU with more than one process.

    With the agent's CPU fixes (agent.workloads.patches) stage 3 runs on the
    CPU, but Paddle 3.3.1's stage 3 with offload moves each offloaded slice
    back with `tensor.to("cpu:0")` before it gathers the parameter, and Paddle
    rejects that device name (ValueError). Only PaddleNLP's `sharding`
    string can request offload. In one process PaddleNLP sets up no
    sharding, and config.json records that.
    """
    if device != "cpu" or processes <= 1:
        return
    for workload_id in workload_ids:
        if pack.workload(workload_id)["kind"] not in TRAINER_KINDS:
            continue
        value = str(_workload_values(pack, workload_id, overrides).get("sharding", ""))
        options = value.split()
        if "stage3" in options and "offload" in options:
            raise AgentError(
                "sharding_stage_unsupported",
                _("{workload}: sharding {value} (sharding stage 3 with offload) cannot run on the CPU: Paddle's "
                  "stage 3 moves offloaded parameters to a device named \"cpu:0\", which Paddle rejects").format(
                    workload=workload_id, value=repr(value)),
                _("leave out offload, which moves parameters to host memory, where a CPU run keeps them anyway: "
                  "--set sharding={example}").format(example=" ".join(option for option in options if option != "offload")),
            )


def parallel_degrees_above_one(values: dict[str, Any]) -> dict[str, int]:
    """Return the parallel degrees above 1 among a workload's hyperparameter values."""
    return {key: int(values[key]) for key in DEGREE_KEYS if key in values and int(values[key]) > 1}


def check_micro_batch(pack: RulePack, workload_ids: list[str], overrides: dict[str, Any], cards: int) -> None:
    """Raise AgentError when a planned workload's global batch does not split into the chosen micro-batches.

    The parallel degrees are checked first, so that the data-parallel ranks are a whole number.
    """
    check_parallel_degrees(pack, workload_ids, overrides, cards)
    for workload_id in workload_ids:
        values = _workload_values(pack, workload_id, overrides)
        if "global_batch_size" not in pack.workload(workload_id)["hyperparameters"]["fixed"] or "per_device_train_batch_size" not in values:
            continue
        model_ranks = 1
        if pack.workload(workload_id)["kind"] in TRAINER_KINDS:
            model_ranks = int(values.get("tensor_parallel_degree", 1)) * int(values.get("pipeline_parallel_degree", 1))
        data_ranks = cards // max(1, model_ranks)
        micro, global_batch = int(values["per_device_train_batch_size"]), int(values["global_batch_size"])
        if micro < 1 or global_batch % (micro * data_ranks):
            raise AgentError("micro_batch_invalid", _("{workload}: global_batch_size {global_batch} is not a multiple of "
                                                      "per_device_train_batch_size {micro} x {ranks} ranks that split the batch ({split})").format(
                                 workload=workload_id, global_batch=global_batch, micro=micro, ranks=data_ranks,
                                 split=_describe_batch_split(values, data_ranks)),
                             _micro_batch_hint(global_batch, data_ranks))
