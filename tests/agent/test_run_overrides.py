"""`--set` for free hyperparameters, `--device` and `--workloads`: what `python -m agent run` accepts and rejects."""

from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import EXIT_USAGE, AgentError
from agent.runner import RunRequest, start_run
from agent.runner.overrides import check_micro_batch, check_overrides, parse_assignments
from certification.rulepack import load_rule_pack, parse_rule_pack

REPO = Path(__file__).resolve().parents[2]
PLANNED = ["pretrain-llama", "sft-llama", "lora-llama"]


@pytest.fixture(scope="module")
def pack():
    return load_rule_pack("tiny-2026.1")


def test_parse_assignments_reads_yaml_values():
    values = parse_assignments(["per_device_train_batch_size=2", "recompute=true", "sharding_stage=1", "note=a=b"])

    assert values == {"per_device_train_batch_size": 2, "recompute": True, "sharding_stage": 1, "note": "a=b"}


@pytest.mark.parametrize("assignment", ["per_device_train_batch_size", "=2", ""])
def test_parse_assignments_rejects_malformed(assignment):
    with pytest.raises(AgentError) as error:
        parse_assignments([assignment])

    assert error.value.code == "set_invalid"


@pytest.mark.parametrize("assignment", ["per_device_train_batch_size=", "per_device_train_batch_size=  "])
def test_parse_assignments_rejects_empty_value(assignment):
    with pytest.raises(AgentError) as error:
        parse_assignments([assignment])

    assert error.value.code == "set_value_empty"
    assert error.value.message == f"--set {assignment!r} has no value after the equals sign"
    assert "--set per_device_train_batch_size=2" in error.value.hint


def test_free_key_accepted(pack):
    check_overrides(pack, PLANNED, {"per_device_train_batch_size": 2, "recompute": True, "eval_batch_size": 2})


REJECTED = [
    ({"learning_rate": 0.1}, "hyperparameter_fixed", "learning_rate"),
    ({"max_steps": 5}, "hyperparameter_fixed", "max_steps"),
    ({"global_batch_size": 8}, "hyperparameter_fixed", "global_batch_size"),
    ({"seed": 1}, "hyperparameter_fixed", "seed"),
    ({"per_device_batch_size": 2}, "hyperparameter_unknown", "per_device_batch_size"),
    ({"per_device_train_batch_size": "two"}, "hyperparameter_invalid", "per_device_train_batch_size"),
    ({"recompute": 1}, "hyperparameter_invalid", "recompute"),
]


@pytest.mark.parametrize(("overrides", "code", "key"), REJECTED)
def test_rejected_key_named(pack, overrides, code, key):
    with pytest.raises(AgentError) as error:
        check_overrides(pack, PLANNED, overrides)

    assert error.value.code == code
    assert key in error.value.message
    assert error.value.hint


def test_unknown_key_suggests_closest(pack):
    with pytest.raises(AgentError) as error:
        check_overrides(pack, PLANNED, {"per_device_batch_size": 2})

    assert "per_device_train_batch_size" in error.value.hint


@pytest.mark.parametrize(("micro", "cards", "valid"), [(2, 1, True), (1, 4, True), (3, 1, False), (4, 2, False)])
def test_micro_batch_divides_global_batch(pack, micro, cards, valid):
    overrides = {"per_device_train_batch_size": micro}

    if valid:
        check_micro_batch(pack, PLANNED, overrides, cards)
    else:
        with pytest.raises(AgentError) as error:
            check_micro_batch(pack, PLANNED, overrides, cards)
        assert error.value.code == "micro_batch_invalid"


def test_micro_batch_error_names_sharding_split(pack):
    with pytest.raises(AgentError) as error:
        check_micro_batch(pack, ["pretrain-llama"], {"sharding_stage": 3}, 2)

    assert error.value.code == "micro_batch_invalid"
    assert "4 x 2 ranks" in error.value.message
    assert "(data-parallel 1 x sharding 2)" in error.value.message
    assert "--set per_device_train_batch_size=2" in error.value.hint
    check_micro_batch(pack, ["pretrain-llama"], {"sharding_stage": 3, "per_device_train_batch_size": 2}, 2)


def test_micro_batch_error_without_sharding(pack):
    with pytest.raises(AgentError) as error:
        check_micro_batch(pack, ["pretrain-llama"], {"per_device_train_batch_size": 3}, 1)

    assert "(data-parallel 1)" in error.value.message
    assert "one of 1, 2, 4" in error.value.hint


def test_micro_batch_hint_when_ranks_do_not_divide(pack):
    with pytest.raises(AgentError) as error:
        check_micro_batch(pack, ["pretrain-llama"], {"per_device_train_batch_size": 1}, 3)

    assert "3 ranks do not divide global_batch_size 4" in error.value.hint


def test_command_rejects_fixed_key(tmp_path, capsys):
    exit_code = main(["run", "--profile", "tiny", "--out", str(tmp_path / "run"), "--set", "learning_rate=0.5"])

    assert exit_code == EXIT_USAGE
    error = capsys.readouterr().err
    assert "error[hyperparameter_fixed]" in error
    assert "learning_rate" in error
    assert not (tmp_path / "run").exists()


def test_unknown_device_rejected(tmp_path):
    request = RunRequest(profile="tiny", out=tmp_path / "run", resume=False, data_root=REPO, device="quantum")

    with pytest.raises(AgentError) as error:
        start_run(request)

    assert error.value.code == "device_not_available"
    assert "cpu" in error.value.hint
    assert not (tmp_path / "run").exists()


def test_resume_with_other_overrides_rejected(tmp_path):
    out = tmp_path / "run"
    (out / "workloads").mkdir(parents=True)
    pack = load_rule_pack("tiny-2026.1")
    (out / "run.json").write_text(
        '{"profile": "tiny", "rule_pack": {"name": "tiny-2026.1", "sha256": "%s"}, "overrides": {}}' % pack.sha256,
        encoding="utf-8")
    request = RunRequest(profile="tiny", out=out, resume=True, data_root=REPO,
                         overrides={"per_device_train_batch_size": 2})

    with pytest.raises(AgentError) as error:
        start_run(request)

    assert error.value.code == "run_mismatch"


STANDARD_TRAINING = ["pretrain-llama1-13b", "sft-llama1-13b"]


def test_set_value_kind_cannot_run():
    standard = load_rule_pack("standard-2024.1")

    with pytest.raises(AgentError) as error:
        check_overrides(standard, STANDARD_TRAINING, {"pipeline_parallel_degree": 2})

    assert error.value.code == "hyperparameter_invalid"
    assert error.value.message == ("workload sft-llama1-13b: pipeline_parallel_degree is 2, "
                                   "but sft workloads can only run with exactly 1")
    assert "--workloads" in error.value.hint
    check_overrides(standard, ["pretrain-llama1-13b"], {"pipeline_parallel_degree": 2})


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("scheduler", "fancy", "one of continuous, static"),
    ("scheduler", "Continuous", "one of continuous, static"),
])
def test_set_value_checked_like_pack(key, value, expected):
    with pytest.raises(AgentError) as error:
        check_overrides(load_rule_pack("smoke-2026.1"), ["infer-llama"], {key: value})

    assert error.value.code == "hyperparameter_invalid"
    assert error.value.message.startswith(f"workload infer-llama: {key} is {value}, ")
    assert error.value.message.endswith(f"but it must be {expected}")


def test_set_key_kind_does_not_read():
    text = load_rule_pack("demo-2026.1").text.replace("        batch_wait_ms: 5\n", "        batch_wait_ms: 5\n        recompute: false\n", 1)
    pack = parse_rule_pack(text.encode("utf-8"))

    with pytest.raises(AgentError) as error:
        check_overrides(pack, ["infer-llama"], {"recompute": True})

    assert error.value.code == "hyperparameter_unread"
    assert error.value.message.startswith("workload infer-llama: infer workloads do not read recompute; ")
    assert "remove --set recompute=..." in error.value.hint


def test_set_kind_message_in_chinese():
    from agent.i18n import set_language

    set_language("zh")
    try:
        with pytest.raises(AgentError) as error:
            check_overrides(load_rule_pack("standard-2024.1"), STANDARD_TRAINING, {"pipeline_parallel_degree": 2})
    finally:
        set_language(None)

    assert error.value.message == "工作负载 sft-llama1-13b：pipeline_parallel_degree 为 2，但 sft 工作负载只能使用 1"
    assert error.value.hint == "请把 pipeline_parallel_degree 设为 1，或用 --workloads 让本次运行不包含 sft-llama1-13b"


@pytest.mark.parametrize(("workload_id", "kind", "key", "value"), [
    ("sft-llama1-13b", "sft", "gradient_accumulation_steps", 4),
    ("lora-llama1-13b", "lora", "zero_padding", True),
    ("pretrain-llama1-13b", "pretrain", "virtual_pp_degree", 2),
    ("pretrain-llama1-13b", "pretrain", "gradient_accumulation_steps", 8),
    ("sft-sd", "sd_sft", "recompute", False),
    ("infer-llama1-13b-bf16", "infer", "max_concurrency", 32),
    ("infer-llama1-13b-bf16", "infer", "block_attn", False),
])
def test_set_recorded_key_rejected(workload_id, kind, key, value):
    with pytest.raises(AgentError) as error:
        check_overrides(load_rule_pack("standard-2024.1"), [workload_id], {key: value})

    assert error.value.code == "hyperparameter_not_applied"
    assert error.value.message.startswith(f"--set {key}=")
    assert f"the agent does not apply {key} to {kind} workloads such as {workload_id}" in error.value.message
    assert f"remove --set {key}=..." in error.value.hint


def test_set_recorded_key_rejected_for_any_planned_workload():
    """SFT applies recompute and SD fine-tuning only records it, so a run that plans both rejects it."""
    pack = load_rule_pack("standard-2024.1")

    check_overrides(pack, ["sft-qwen-14b"], {"recompute": False})
    with pytest.raises(AgentError) as error:
        check_overrides(pack, ["sft-qwen-14b", "sft-sd"], {"recompute": False})

    assert error.value.code == "hyperparameter_not_applied"
    assert "--workloads" in error.value.hint


def test_recorded_keys_are_not_applied():
    """Every key that a kind records must be absent from the code that applies hyperparameters to a run."""
    from certification.kind_hyperparameters import KIND_HYPERPARAMETERS, is_recorded_only

    for kind, rules in KIND_HYPERPARAMETERS.items():
        for key in rules.recorded:
            assert is_recorded_only(kind, key), (kind, key)
        for key in rules.reads:
            assert not is_recorded_only(kind, key), (kind, key)
