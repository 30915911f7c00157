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


# Kind-aware checks (certification.kind_hyperparameters) -------------------------------------------------

def demo_workload_with(workload_id: str, section: str, key: str, value):
    data = yaml.safe_load(load_rule_pack("demo-2026.1").text)
    data["workloads"][workload_id]["hyperparameters"].setdefault(section, {})[key] = value
    return validate_rule_pack(data)


@pytest.mark.parametrize(("workload_id", "kind", "section", "key", "value", "text", "expected"), [
    ("pretrain-llama", "pretrain", "fixed", "lr_scheduler_type", "constant", '"constant"', "one of cosine, linear"),
    ("sft-llama", "sft", "fixed", "lr_scheduler_type", "constant", '"constant"', "one of cosine, linear"),
    ("lora-llama", "lora", "fixed", "lr_scheduler_type", "constant", '"constant"', "one of cosine, linear"),
    ("sd-sft-digits", "sd_sft", "fixed", "lr_scheduler_type", "step", '"step"', "one of constant, cosine, linear"),
    ("sft-llama", "sft", "free", "pipeline_parallel_degree", 2, "2", "exactly 1"),
    ("lora-llama", "lora", "free", "pipeline_parallel_degree", 2, "2", "exactly 1"),
    ("lora-llama", "lora", "fixed", "lora", False, "false", "exactly true"),
    ("sd-sft-digits", "sd_sft", "fixed", "random_flip", True, "true", "exactly false"),
    ("sd-sft-digits", "sd_sft", "fixed", "center_crop", False, "false", "exactly true"),
    ("sd-infer-digits", "sd_infer", "fixed", "batch_size", 4, "4", "exactly 1"),
    ("sd-infer-digits", "sd_infer", "fixed", "batch_size", True, "true", "exactly 1"),
])
def test_kind_rejects_value(workload_id, kind, section, key, value, text, expected):
    issues = demo_workload_with(workload_id, section, key, value)

    assert len(issues) == 1
    assert issues[0].path == f"workloads/{workload_id}/hyperparameters/{section}/{key}"
    assert issues[0].code == "hyperparameter_invalid"
    assert issues[0].message == f"workload {workload_id}: {key} is {text}, but {kind} workloads can only run with {expected}"
    assert dict(issues[0].values)["workload_kind"] == kind
    assert dict(issues[0].values)["expected"] == expected


@pytest.mark.parametrize(("workload_id", "section", "key", "value"), [
    ("pretrain-llama", "free", "pipeline_parallel_degree", 2),
    ("pretrain-llama", "fixed", "lr_scheduler_type", "linear"),
    ("sd-sft-digits", "fixed", "lr_scheduler_type", "cosine"),
    ("sd-sft-digits", "fixed", "random_flip", False),
    ("sd-sft-digits", "fixed", "center_crop", True),
    ("lora-llama", "fixed", "lora", True),
    ("sd-infer-digits", "fixed", "batch_size", 1),
    # Fields of PaddleNLP's TrainingArguments that the agent passes to the Trainer as they are.
    ("pretrain-llama", "free", "amp_master_grad", True),
    ("sft-llama", "fixed", "adam_beta2", 0.95),
    ("lora-llama", "free", "gradient_accumulation_steps", 1),
])
def test_kind_accepts_value(workload_id, section, key, value):
    from certification.kind_hyperparameters import hyperparameter_problem

    kind = yaml.safe_load(load_rule_pack("demo-2026.1").text)["workloads"][workload_id]["kind"]
    assert hyperparameter_problem(workload_id, kind, key, value, str(value)) is None
    assert demo_workload_with(workload_id, section, key, value) == []


@pytest.mark.parametrize(("workload_id", "kind", "section", "key", "value", "read_key"), [
    ("pretrain-llama", "pretrain", "fixed", "max_new_tokens", 16, "validation_sequences"),
    ("pretrain-llama", "pretrain", "free", "logging_steps", 5, "checkpoint_steps"),
    ("sft-llama", "sft", "fixed", "lora_rank", 8, "eval_batch_size"),
    ("infer-llama", "infer", "free", "recompute", True, "max_batch_size"),
    ("infer-llama", "infer", "free", "per_device_train_batch_size", 2, "batch_wait_ms"),
    ("infer-llama", "infer", "free", "logging_first_step", True, "scheduler"),
    ("sd-sft-digits", "sd_sft", "free", "tensor_parallel_degree", 2, "per_device_train_batch_size"),
    ("sd-sft-digits", "sd_sft", "fixed", "dropout", 0.0, "guidance_scale"),
    ("sd-infer-digits", "sd_infer", "fixed", "learning_rate", 1.0e-3, "num_inference_steps"),
])
def test_unread_key_rejected(workload_id, kind, section, key, value, read_key):
    issues = demo_workload_with(workload_id, section, key, value)

    assert len(issues) == 1
    assert issues[0].path == f"workloads/{workload_id}/hyperparameters/{section}/{key}"
    assert issues[0].code == "hyperparameter_unread"
    assert issues[0].message.startswith(f"workload {workload_id}: {kind} workloads do not read {key}; remove it, or use one of ")
    values = dict(issues[0].values)
    assert read_key in values["keys"].split(", ")
    assert key not in values["keys"].split(", ")
    assert ("TrainingArguments" in issues[0].message) == (kind in ("pretrain", "sft", "lora"))


def test_every_kind_has_rules():
    import json

    from certification.kind_hyperparameters import KIND_HYPERPARAMETERS
    from certification.rulepack import REQUIRED_DATASET_ROLES, SCHEMA_PATH

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    kinds = schema["properties"]["workloads"]["additionalProperties"]["properties"]["kind"]["enum"]
    assert sorted(KIND_HYPERPARAMETERS) == sorted(kinds)
    assert sorted(KIND_HYPERPARAMETERS) == sorted(REQUIRED_DATASET_ROLES)


def test_kind_rules_describe_bounds():
    import string

    from certification.kind_hyperparameters import KIND_HYPERPARAMETERS

    for kind, rules in KIND_HYPERPARAMETERS.items():
        for key, rule in rules.values.items():
            assert rules.accepts_key(key), (kind, key)
            fields = {name for _literal, name, _spec, _conversion in string.Formatter().parse(EXPECTED_TEXTS[rule.description]) if name}
            for field in fields - {"choices"}:
                assert getattr(rule, field) is not None, (kind, key, field)


def test_copied_lists_match_agent():
    import dataclasses

    from paddlenlp.trainer import TrainingArguments

    from agent.workloads import models, training
    from certification import kind_hyperparameters

    assert kind_hyperparameters.TRAINING_ARGUMENTS_FIELDS == {item.name for item in dataclasses.fields(TrainingArguments)}
    assert kind_hyperparameters.SET_BY_AGENT == training.SET_BY_AGENT
    assert kind_hyperparameters.MODEL_CONFIG_KEYS == models.MODEL_CONFIG_KEYS


def test_validate_pack_rejects_constant_pretrain(tmp_path, capsys):
    path = smoke_copy(tmp_path, "lr_scheduler_type: cosine", "lr_scheduler_type: constant")

    code = main(["--lang", "en", "validate-pack", str(path)])

    output = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert (f"{path}: workloads/pretrain-llama/hyperparameters/fixed/lr_scheduler_type: workload pretrain-llama: "
            'lr_scheduler_type is "constant", but pretrain workloads can only run with one of cosine, linear') in output.out


@pytest.mark.parametrize(("old", "new", "message"), [
    ("lr_scheduler_type: cosine", "lr_scheduler_type: constant",
     '工作负载 pretrain-llama：lr_scheduler_type 为 "constant"，但 pretrain 工作负载只能使用以下取值之一：cosine, linear'),
    ("        batch_size: 1", "        batch_size: 2", "工作负载 sd-infer-digits：batch_size 为 2，但 sd_infer 工作负载只能使用 1"),
    ("validation_sequences: 8", "validation_sequences: 8\n        max_new_tokens: 8",
     "工作负载 pretrain-llama：pretrain 工作负载不读取 max_new_tokens；请删除它，或改用 "),
    ("        max_batch_size: 16", "        max_batch_size: 16\n        recompute: true",
     "工作负载 infer-llama：infer 工作负载不读取 recompute；请删除它，或改用 "),
])
def test_kind_problems_in_chinese(tmp_path, capsys, old, new, message):
    path = smoke_copy(tmp_path, old, new)

    code = main(["--lang", "zh", "validate-pack", str(path)])

    output = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert message in output.out


def test_kind_rules_match_workload_code():
    from agent.workloads.sd import check_augmentation
    from agent.workloads.training import warmup_cosine_schedule
    from certification.kind_hyperparameters import KIND_HYPERPARAMETERS

    schedule = {"learning_rate": 1.0e-3, "max_steps": 10, "warmup_steps": 2}
    for kind in ("pretrain", "sft", "lora"):
        rule = KIND_HYPERPARAMETERS[kind].values["lr_scheduler_type"]
        for name in rule.choices:
            warmup_cosine_schedule({**schedule, "lr_scheduler_type": name})
        assert not rule.accepts("constant")
    with pytest.raises(ValueError):
        warmup_cosine_schedule({**schedule, "lr_scheduler_type": "constant"})

    sd_rules = KIND_HYPERPARAMETERS["sd_sft"].values
    check_augmentation({"random_flip": sd_rules["random_flip"].only, "center_crop": sd_rules["center_crop"].only})
    with pytest.raises(ValueError):
        check_augmentation({"random_flip": True})
    with pytest.raises(ValueError):
        check_augmentation({"center_crop": False})


def demo_workload_moved(workload_id: str, key: str, section: str):
    """Validate the demo pack with `key` of `workload_id` moved into `section` from the other section."""
    data = yaml.safe_load(load_rule_pack("demo-2026.1").text)
    hyperparameters = data["workloads"][workload_id]["hyperparameters"]
    other = "free" if section == "fixed" else "fixed"
    hyperparameters.setdefault(section, {})[key] = hyperparameters[other].pop(key)
    return validate_rule_pack(data)


@pytest.mark.parametrize(("workload_id", "kind", "key", "section", "expected_section"), [
    ("pretrain-llama", "pretrain", "tensor_parallel_degree", "fixed", "free"),
    ("pretrain-llama", "pretrain", "per_device_train_batch_size", "fixed", "free"),
    ("pretrain-llama", "pretrain", "learning_rate", "free", "fixed"),
    ("sft-llama", "sft", "eval_batch_size", "fixed", "free"),
    ("sft-llama", "sft", "global_batch_size", "free", "fixed"),
    ("lora-llama", "lora", "lora_rank", "free", "fixed"),
    ("infer-llama", "infer", "max_batch_size", "fixed", "free"),
    ("infer-llama", "infer", "seed", "free", "fixed"),
    ("sd-sft-digits", "sd_sft", "resolution", "free", "fixed"),
    ("sd-sft-digits", "sd_sft", "per_device_train_batch_size", "fixed", "free"),
    ("sd-infer-digits", "sd_infer", "num_inference_steps", "free", "fixed"),
])
def test_key_in_wrong_section_rejected(workload_id, kind, key, section, expected_section):
    issues = demo_workload_moved(workload_id, key, section)

    assert len(issues) == 1
    assert issues[0].path == f"workloads/{workload_id}/hyperparameters/{section}/{key}"
    assert issues[0].code == "hyperparameter_section"
    assert issues[0].message == (f"workload {workload_id}: {key} is under {section}, but {kind} workloads read it only "
                                 f"from {expected_section}; move it to {expected_section}")


@pytest.mark.parametrize(("workload_id", "key", "section"), [
    # Read from both sections together, so either is right.
    ("pretrain-llama", "use_flash_attention", "fixed"),
    ("pretrain-llama", "use_flash_attention", "free"),
    ("sft-llama", "bf16", "free"),
    ("sft-llama", "sharding_parallel_degree", "fixed"),
    ("infer-llama", "dropout", "free"),
    # Recorded only, and PaddleNLP TrainingArguments fields passed on as they are.
    ("infer-llama", "max_concurrency", "fixed"),
    ("pretrain-llama", "amp_master_grad", "fixed"),
])
def test_key_read_from_both_sections(workload_id, key, section):
    values = {"dropout": 0.0, "max_concurrency": 4, "sharding_parallel_degree": 4}
    value = values.get(key, True)

    assert demo_workload_with(workload_id, section, key, value) == []


def test_sections_only_for_accepted_keys():
    from certification.kind_hyperparameters import KIND_HYPERPARAMETERS

    for kind, rules in KIND_HYPERPARAMETERS.items():
        for key, section in rules.sections.items():
            assert section in ("fixed", "free"), (kind, key)
            assert key in rules.reads, (kind, key)
        for key in rules.length_keys:
            assert rules.sections[key] == "fixed", (kind, key)


def demo_lengths(workload_id: str, **changes):
    """Validate the demo pack with the fixed values of `workload_id` changed; a value of None removes the key."""
    data = yaml.safe_load(load_rule_pack("demo-2026.1").text)
    fixed = data["workloads"][workload_id]["hyperparameters"]["fixed"]
    for key, value in changes.items():
        fixed.pop(key) if value is None else fixed.__setitem__(key, value)
    return validate_rule_pack(data)


@pytest.mark.parametrize("workload_id", ["sft-llama", "lora-llama"])
def test_finetune_trains_by_epochs_or_steps(workload_id):
    assert demo_lengths(workload_id) == []
    assert demo_lengths(workload_id, max_steps=None, num_train_epochs=2) == []


@pytest.mark.parametrize(("workload_id", "kind", "keys"), [
    ("pretrain-llama", "pretrain", "max_steps"),
    ("sft-llama", "sft", "max_steps, num_train_epochs"),
    ("lora-llama", "lora", "max_steps, num_train_epochs"),
    ("sd-sft-digits", "sd_sft", "max_steps"),
])
def test_training_length_missing(workload_id, kind, keys):
    issues = demo_lengths(workload_id, max_steps=None)

    assert len(issues) == 1
    assert issues[0].path == f"workloads/{workload_id}/hyperparameters/fixed"
    assert issues[0].code == "training_length_missing"
    assert issues[0].message == (f"workload {workload_id}: {kind} workloads need exactly one of {keys} under fixed, "
                                 "to set how long they train")


@pytest.mark.parametrize("workload_id", ["sft-llama", "lora-llama"])
def test_training_length_set_twice(workload_id):
    issues = demo_lengths(workload_id, num_train_epochs=2)

    assert len(issues) == 1
    assert issues[0].code == "training_length_ambiguous"
    assert "fixed sets max_steps, num_train_epochs" in issues[0].message


def test_pretrain_epochs_rejected():
    codes = {issue.code for issue in demo_lengths("pretrain-llama", max_steps=None, num_train_epochs=2)}

    assert codes == {"hyperparameter_unread", "training_length_missing"}


def test_standard_pack_finetunes_by_epochs():
    data = yaml.safe_load(load_rule_pack("standard-2024.1").text)

    for workload_id, workload in data["workloads"].items():
        if workload["kind"] in ("sft", "lora"):
            assert workload["hyperparameters"]["fixed"]["num_train_epochs"] == 3, workload_id
            assert "max_steps" not in workload["hyperparameters"]["fixed"], workload_id
    assert validate_rule_pack(data) == []
