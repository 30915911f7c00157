"""Parallel degrees and batch sizes under `--set`: rejected before the run when they do not fit its processes."""

from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import EXIT_USAGE, AgentError
from agent.runner.overrides import check_micro_batch, check_overrides, check_parallel_degrees
from certification.rulepack import load_rule_pack

REPO = Path(__file__).resolve().parents[2]
PLANNED = ["pretrain-llama", "sft-llama", "lora-llama"]


@pytest.fixture(scope="module")
def pack():
    return load_rule_pack("smoke-2026.1")


@pytest.mark.parametrize(("overrides", "processes"), [
    ({"pipeline_parallel_degree": 2}, 1),
    ({"tensor_parallel_degree": 2}, 1),
    ({"tensor_parallel_degree": 2, "pipeline_parallel_degree": 2}, 2),
    ({"tensor_parallel_degree": 2}, 3),
])
def test_degrees_not_dividing_processes(pack, overrides, processes):
    with pytest.raises(AgentError) as error:
        check_parallel_degrees(pack, PLANNED, overrides, processes)

    assert error.value.code == "parallel_degrees_invalid"
    assert "tensor_parallel_degree" in error.value.message
    assert "pipeline_parallel_degree" in error.value.message
    assert f"process count, {processes}" in error.value.message
    assert "python -m paddle.distributed.launch --nproc_per_node" in error.value.hint


@pytest.mark.parametrize(("overrides", "processes"), [
    ({}, 1), ({"pipeline_parallel_degree": 2}, 2), ({"tensor_parallel_degree": 2}, 4),
])
def test_degrees_dividing_processes(pack, overrides, processes):
    check_parallel_degrees(pack, PLANNED, overrides, processes)


def test_sharding_degree_counts():
    standard = load_rule_pack("standard-2024.1")

    # tensor 2 x pipeline 1 x sharding 4 fills 8 cards.
    check_parallel_degrees(standard, ["pretrain-llama1-13b"], {}, 8)
    with pytest.raises(AgentError) as error:
        check_parallel_degrees(standard, ["pretrain-llama1-13b"], {}, 4)
    assert "sharding_parallel_degree 4" in error.value.message
    assert "need 8 processes" in error.value.message


def test_micro_batch_check_rejects_degrees_first(pack):
    with pytest.raises(AgentError) as error:
        check_micro_batch(pack, PLANNED, {"pipeline_parallel_degree": 2}, 1)

    assert error.value.code == "parallel_degrees_invalid"


def test_pipeline_run_in_one_process_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"

    code = main(["--lang", "en", "run", "--profile", "smoke", "--out", str(out), "--set", "pipeline_parallel_degree=2"])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[parallel_degrees_invalid]: pretrain-llama: tensor_parallel_degree 1 x pipeline_parallel_degree 2 need 2 processes" in error
    assert "--nproc_per_node 2" in error
    assert not out.exists()


@pytest.mark.parametrize(("key", "value", "rule"), [
    ("pipeline_parallel_degree", 0, "a positive integer"),
    ("tensor_parallel_degree", 0, "a positive integer"),
    ("tensor_parallel_degree", -2, "a positive integer"),
    ("per_device_train_batch_size", -1, "a positive integer"),
    ("per_device_train_batch_size", 0, "a positive integer"),
    ("eval_batch_size", 0, "a positive integer"),
    ("sharding_stage", 4, "an integer from 0 to 3"),
    ("per_device_train_batch_size", 2.5, "a positive integer"),
    ("per_device_train_batch_size", True, "a positive integer"),
    ("recompute", 1, "true or false"),
])
def test_invalid_value_names_rule(pack, key, value, rule):
    with pytest.raises(AgentError) as error:
        check_overrides(pack, PLANNED, {key: value})

    assert error.value.code == "hyperparameter_invalid"
    assert f"{key}={str(value).lower() if isinstance(value, bool) else value} is invalid: {key} must be {rule}" in error.value.message
    assert f"--set {key}=" in error.value.hint


def test_zero_degree_is_usage_error(tmp_path, capsys):
    code = main(["--lang", "en", "run", "--profile", "smoke", "--out", str(tmp_path / "run"), "--set", "pipeline_parallel_degree=0"])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[hyperparameter_invalid]: pipeline_parallel_degree=0 is invalid" in error
    assert "error[internal]" not in error


def test_zero_degree_in_chinese(tmp_path, capsys):
    code = main(["--lang", "zh", "run", "--profile", "smoke", "--out", str(tmp_path / "run"), "--set", "tensor_parallel_degree=0"])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "tensor_parallel_degree=0" in error
    assert "正整数" in error
    assert "positive" not in error


def workload_context(pack, tmp_path, overrides):
    from agent.workloads.common import WorkloadContext

    return WorkloadContext(workload_id="pretrain-llama", spec=pack.workload("pretrain-llama"), pack=pack, data_root=REPO,
                           run_dir=tmp_path, device="cpu", overrides=overrides)


def test_paddlenlp_dropping_a_degree_fails_workload(pack, tmp_path):
    from agent.workloads.training import training_arguments

    # Past the runner's check, PaddleNLP itself sets pipeline parallelism up in one process as -1 (none).
    with pytest.raises(ValueError, match="pipeline 2 requested, 1 set up"):
        training_arguments(workload_context(pack, tmp_path, {"pipeline_parallel_degree": 2}))


def test_one_process_degrees_recorded_as_one(pack, tmp_path):
    from agent.workloads.training import resolved_degrees, training_arguments

    context = workload_context(pack, tmp_path, {})
    args = training_arguments(context)

    assert resolved_degrees(context, args) == {"data": 1, "sharding": 1, "tensor": 1, "pipeline": 1}


def test_sharding_stage_recorded_as_set_up(pack, tmp_path, caplog):
    from agent.workloads.training import sharding_used, training_arguments

    # In one process PaddleNLP drops the requested stage, so the record shows no sharding.
    context = workload_context(pack, tmp_path, {"sharding_stage": 2})
    with caplog.at_level("WARNING", logger="agent.workloads.training"):
        recorded = sharding_used(context, training_arguments(context))

    assert recorded == {"sharding": "", "sharding_requested": "stage2"}
    assert "sharding 'stage2' was requested, but PaddleNLP set up no sharding, because the sharding degree is 1" in caplog.text


def test_cpu_sharding_stage3_offload_rejected():
    from agent.runner.overrides import check_sharding_on_device

    standard = load_rule_pack("standard-2024.1")
    with pytest.raises(AgentError) as error:
        check_sharding_on_device(standard, ["pretrain-llama1-13b"], {"sharding": "stage3 offload"}, "cpu", 2)

    assert error.value.code == "sharding_stage_unsupported"
    assert "pretrain-llama1-13b: sharding 'stage3 offload' (sharding stage 3 with offload) cannot run on the CPU" in error.value.message
    assert "--set sharding=stage3" in error.value.hint


@pytest.mark.parametrize(("overrides", "device", "processes"), [
    ({"sharding_stage": 2}, "cpu", 2), ({"sharding_stage": 3}, "cpu", 2), ({"sharding_stage": 3}, "gpu", 2),
    ({"sharding_stage": 3}, "cpu", 1),
])
def test_sharding_stage_accepted(pack, overrides, device, processes):
    from agent.runner.overrides import check_sharding_on_device

    check_sharding_on_device(pack, PLANNED, overrides, device, processes)


@pytest.mark.parametrize(("overrides", "device", "processes"), [
    ({"sharding": "stage3"}, "cpu", 2), ({"sharding": "stage2 offload"}, "cpu", 2),
    ({"sharding": "stage3 offload"}, "gpu", 2), ({"sharding": "stage3 offload"}, "cpu", 1),
])
def test_sharding_string_accepted(overrides, device, processes):
    from agent.runner.overrides import check_sharding_on_device

    standard = load_rule_pack("standard-2024.1")
    check_sharding_on_device(standard, ["pretrain-llama1-13b"], overrides, device, processes)
