"""Types and ranges of fixed and free hyperparameters in rule packs (certification.hyperparameters)."""

import pytest
import yaml

from agent.cli import main
from agent.errors import EXIT_REJECTED
from certification.hyperparameters import EXPECTED_TEXTS, HYPERPARAMETER_RULES, expected_value
from certification.rulepack import RULEPACK_DIR, available_rule_packs, load_rule_pack, validate_rule_pack, validate_rule_pack_file

SMOKE = RULEPACK_DIR / "smoke-2026.1.yaml"


def smoke_copy(tmp_path, old: str, new: str):
    """Write a copy of the smoke pack, a draft, with the first `old` line replaced, under the pack's own file name."""
    text = SMOKE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / SMOKE.name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "message"), [
    ("global_batch_size: 4", "global_batch_size: -4",
     "workload pretrain-llama: global_batch_size is -4, but it must be an integer of at least 1"),
    ("seed: 42", "seed: forty", 'workload pretrain-llama: seed is "forty", but it must be an integer of at least 0'),
    ("max_steps: 20", "max_steps: two hundred",
     'workload pretrain-llama: max_steps is "two hundred", but it must be an integer of at least 1'),
])
def test_trial_values_are_rejected(tmp_path, old, new, message):
    issues = validate_rule_pack_file(smoke_copy(tmp_path, old, new))

    assert [issue.message for issue in issues] == [message]
    assert issues[0].path == f"workloads/pretrain-llama/hyperparameters/fixed/{old.split(':')[0]}"
    assert issues[0].code == "hyperparameter_invalid"


def test_validate_pack_command_rejects_batch(tmp_path, capsys):
    path = smoke_copy(tmp_path, "global_batch_size: 4", "global_batch_size: -4")

    code = main(["--lang", "en", "validate-pack", str(path)])

    output = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert (f"{path}: workloads/pretrain-llama/hyperparameters/fixed/global_batch_size: "
            "workload pretrain-llama: global_batch_size is -4, but it must be an integer of at least 1") in output.out
    assert "valid rule pack" not in output.out


@pytest.mark.parametrize("name", available_rule_packs())
def test_shipped_pack_values_are_accepted(name):
    data = yaml.safe_load(load_rule_pack(name).text)
    for workload in data["workloads"].values():
        for section in ("fixed", "free"):
            for key, value in (workload["hyperparameters"].get(section) or {}).items():
                assert expected_value(key, value) is None, (name, key, value)


def demo_with(section: str, key: str, value):
    data = yaml.safe_load(load_rule_pack("demo-2026.1").text)
    data["workloads"]["sft-llama"]["hyperparameters"].setdefault(section, {})[key] = value
    return validate_rule_pack(data)


@pytest.mark.parametrize(("section", "key", "value", "expected"), [
    ("free", "per_device_train_batch_size", 0, "an integer of at least 1"),
    ("free", "tensor_parallel_degree", 2.0, "an integer of at least 1"),
    ("free", "recompute", "yes", "true or false"),
    ("free", "sharding_stage", 4, "an integer from 0 to 3"),
    ("free", "sharding", "stage4", "empty, or stage1, stage2, stage3 or offload, several separated by spaces"),
    ("fixed", "learning_rate", 0, "a number above 0"),
    ("fixed", "learning_rate", float("nan"), "a number above 0"),
    ("fixed", "learning_rate", True, "a number above 0"),
    ("fixed", "dropout", 1.0, "a number of at least 0 and below 1"),
    ("fixed", "lr_scheduler_type", "step", "one of cosine, linear, constant"),
    ("fixed", "decode_strategy", "sampling", "one of greedy_search"),
    ("fixed", "max_new_tokens", "16", "an integer of at least 1"),
    ("fixed", "warmup_steps", -1, "an integer of at least 0"),
])
def test_invalid_value_names_expected(section, key, value, expected):
    issues = demo_with(section, key, value)

    assert len(issues) == 1
    assert issues[0].path == f"workloads/sft-llama/hyperparameters/{section}/{key}"
    assert issues[0].message.startswith(f"workload sft-llama: {key} is ")
    assert issues[0].message.endswith(f", but it must be {expected}")
    assert dict(issues[0].values)["expected"] == expected


@pytest.mark.parametrize(("section", "key", "value"), [
    ("free", "sharding", ""), ("free", "sharding", "stage1 offload"), ("free", "sharding_stage", 0),
    ("fixed", "learning_rate", 3), ("fixed", "warmup_steps", 0), ("fixed", "seed", 0),
    ("fixed", "weight_decay", 0.0), ("free", "recompute", False),
])
def test_edge_values_are_accepted(section, key, value):
    assert demo_with(section, key, value) == []


def test_unknown_key_is_not_checked():
    assert "logging_first_step" not in HYPERPARAMETER_RULES
    assert demo_with("free", "logging_first_step", "anything") == []


def test_rule_descriptions_fit_bounds():
    import string

    for key, rule in HYPERPARAMETER_RULES.items():
        fields = {name for _literal, name, _spec, _conversion in string.Formatter().parse(EXPECTED_TEXTS[rule.description]) if name}
        for field in fields - {"choices"}:
            assert getattr(rule, field) is not None, (key, field)
        if "choices" in fields:
            assert rule.choices, key


def test_agent_translates_every_description():
    from agent.commands.validate_pack import EXPECTED_TEXTS as AGENT_TEXTS

    assert AGENT_TEXTS == EXPECTED_TEXTS


@pytest.mark.parametrize(("old", "new", "message"), [
    ("global_batch_size: 4", "global_batch_size: -4", "工作负载 pretrain-llama：global_batch_size 为 -4，但它必须是不小于 1 的整数"),
    ("seed: 42", "seed: forty", '工作负载 pretrain-llama：seed 为 "forty"，但它必须是不小于 0 的整数'),
    ("dropout: 0.0", "dropout: 1.5", "工作负载 pretrain-llama：dropout 为 1.5，但它必须是不小于 0 且小于 1 的数"),
])
def test_validate_pack_in_chinese(tmp_path, capsys, old, new, message):
    path = smoke_copy(tmp_path, old, new)

    code = main(["--lang", "zh", "validate-pack", str(path)])

    output = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert message in output.out


def test_scheduler_choices_match_agent():
    from agent.inference.server import SCHEDULERS as SERVER_SCHEDULERS
    from agent.workloads.sd_images import SCHEDULERS as SD_SCHEDULERS

    assert HYPERPARAMETER_RULES["scheduler"].choices == SERVER_SCHEDULERS
    assert HYPERPARAMETER_RULES["inference_scheduler"].choices == SD_SCHEDULERS
