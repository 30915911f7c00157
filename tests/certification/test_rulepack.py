import pytest
import yaml

from certification.rulepack import available_rule_packs, load_rule_pack, validate_rule_pack


def pack_data():
    return yaml.safe_load(load_rule_pack("demo-2026.1").text)


@pytest.mark.parametrize("name", available_rule_packs())
def test_shipped_packs_are_valid(name):
    assert validate_rule_pack(yaml.safe_load(load_rule_pack(name).text)) == []


def set_path(data, path, value):
    *parents, last = path
    for part in parents:
        data = data[part]
    if value is DELETE:
        del data[last]
    else:
        data[last] = value


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "reported"),
    [
        (("schema",), 2, "schema"),
        (("reference_kind",), "gpu", "reference_kind"),
        (("settings", "lambada", "items"), 0, "settings/lambada/items"),
        (("settings", "rouge", "variants"), ["rouge9"], "settings/rouge/variants/0"),
        (("settings", "loss_alignment", "window"), DELETE, "settings/loss_alignment"),
        (("datasets", "lambada", "sha256"), "abc", "datasets/lambada/sha256"),
        (("workloads", "sft-llama", "criteria", 0, "metric"), "bleu", "workloads/sft-llama/criteria/0/metric"),
        (("workloads", "sft-llama", "kind"), "dpo", "workloads/sft-llama/kind"),
        (("tracks", "pretraining", "levels", 1, "throughput_ratio_min"), -1, "tracks/pretraining/levels/1/throughput_ratio_min"),
        (("workloads", "sft-llama", "model"), "gpt-5", "workloads/sft-llama/model"),
        (("tracks", "finetuning", "levels", 1, "workloads"), ["absent"], "tracks/finetuning/levels/1/workloads"),
        (("settings", "loss_alignment", "steps"), 210, "settings/loss_alignment/steps"),
        (("workloads", "lora-llama", "criteria", 0, "id"), "sft.rouge", "workloads/lora-llama/criteria/0/id"),
        (("workloads", "sft-llama", "datasets", "train"), {"zh": "sft_zh_train"}, "workloads/sft-llama/datasets/train"),
        (("workloads", "sft-llama", "datasets", "eval"), [], "workloads/sft-llama/datasets/eval"),
        (("workloads", "sft-llama", "datasets", "eval"), DELETE, "workloads/sft-llama/datasets/eval"),
        (("workloads", "infer-llama", "datasets", "prompts"), ["prompts_zh", "prompts_en"], "workloads/infer-llama/datasets/prompts"),
        (("workloads", "pretrain-llama", "datasets", "validation"), DELETE, "workloads/pretrain-llama/datasets/validation"),
        (("workloads", "sft-llama", "datasets", "dev"), "sft_zh_dev", "workloads/sft-llama/datasets"),
        (("workloads", "infer-llama", "datasets", "lambada"), DELETE, "workloads/infer-llama/datasets/lambada"),
    ],
)
def test_invalid_pack_reports_path(path, value, reported):
    data = pack_data()
    set_path(data, path, value)

    issues = validate_rule_pack(data)

    assert reported in [issue.path for issue in issues]


@pytest.mark.parametrize(
    ("path", "value", "reported", "code", "values"),
    [
        (("settings", "loss_alignment", "window"), "lots", "settings/loss_alignment/window", "schema_type",
         {"value": '"lots"', "type": "integer", "found": "string"}),
        (("settings", "loss_alignment", "steps"), -5, "settings/loss_alignment/steps", "schema_minimum", {"value": "-5", "limit": "1"}),
        (("status",), "wobbly", "status", "schema_enum", {"value": '"wobbly"', "choices": '"draft", "published", "withdrawn"'}),
        (("schema",), 2, "schema", "schema_const", {"value": "2", "expected": "1"}),
        (("workloads", "sft-llama", "kind"), DELETE, "workloads/sft-llama", "schema_required", {"key": "kind"}),
        (("bogus",), 1, "(top level)", "schema_additional_properties", {"keys": "bogus"}),
        (("id",), "Bad Id", "id", "schema_pattern", {"value": '"Bad Id"', "pattern": "^[a-z0-9][a-z0-9_]*$"}),
        (("settings", "throughput", "mean_steps"), [5], "settings/throughput/mean_steps", "schema_min_items", {"limit": "2"}),
        (("tracks", "pretraining", "levels", 1, "throughput_ratio_min"), 0, "tracks/pretraining/levels/1/throughput_ratio_min",
         "schema_exclusive_minimum", {"value": "0", "limit": "0"}),
        (("settings", "rouge", "variants"), ["rouge1", "rouge1"], "settings/rouge/variants", "schema_invalid", {"keyword": "uniqueItems"}),
        (("workloads", "sft-llama", "model"), "gpt-5", "workloads/sft-llama/model", "unknown_model", {"model": "gpt-5"}),
        (("workloads", "lora-llama", "init_from"), "nowhere", "workloads/lora-llama/init_from", "unknown_workload", {"workload": "nowhere"}),
        (("workloads", "pretrain-llama", "datasets", "train"), "ghost", "workloads/pretrain-llama/datasets/train", "unknown_dataset", {"dataset": "ghost"}),
        (("workloads", "pretrain-llama", "datasets", "validation"), DELETE, "workloads/pretrain-llama/datasets/validation", "dataset_role_missing",
         {"workload_kind": "pretrain", "role": "validation"}),
        (("tracks", "finetuning", "levels", 1, "workloads"), ["absent"], "tracks/finetuning/levels/1/workloads", "unknown_workload", {"workload": "absent"}),
        (("settings", "loss_alignment", "steps"), 210, "settings/loss_alignment/steps", "loss_steps_not_windows", {"steps": "210", "window": "20"}),
        (("settings", "throughput", "mean_steps"), [9, 3], "settings/throughput/mean_steps", "mean_steps_reversed", {"first": "9", "last": "3"}),
        (("workloads", "lora-llama", "criteria", 0, "id"), "sft.rouge", "workloads/lora-llama/criteria/0/id", "criterion_id_duplicate",
         {"criterion": "sft.rouge", "workload": "sft-llama"}),
    ],
)
def test_issue_code_and_values(path, value, reported, code, values):
    data = pack_data()
    set_path(data, path, value)

    issues = {issue.path: issue for issue in validate_rule_pack(data)}

    assert reported in issues
    assert issues[reported].code == code
    assert dict(issues[reported].values) == values


def test_fixed_and_free_issue_code():
    data = pack_data()
    hyperparameters = data["workloads"]["infer-llama"]["hyperparameters"]
    hyperparameters.setdefault("free", {})["decode_strategy"] = hyperparameters["fixed"]["decode_strategy"]

    issues = validate_rule_pack(data)

    assert [(issue.code, dict(issue.values)) for issue in issues] == [("hyperparameter_fixed_and_free", {"keys": "decode_strategy"})]


@pytest.mark.parametrize(("path", "value", "reported"), [
    (("settings", "rouge", "variants"), ["rouge9"], "settings/rouge/variants/0"),
    (("workloads", "sft-llama", "datasets", "train"), {"zh": "sft_zh_train"}, "workloads/sft-llama/datasets/train"),
    (("workloads", "sft-llama", "datasets", "eval"), [], "workloads/sft-llama/datasets/eval"),
])
def test_every_issue_has_code(path, value, reported):
    data = pack_data()
    set_path(data, path, value)

    issues = validate_rule_pack(data)

    assert reported in [issue.path for issue in issues]
    assert all(issue.code for issue in issues), issues


def test_every_error_is_reported():
    data = pack_data()
    data["schema"] = 2
    data["reference_kind"] = "gpu"

    paths = [issue.path for issue in validate_rule_pack(data)]

    assert "schema" in paths
    assert "reference_kind" in paths


@pytest.mark.parametrize("train", ["sft_zh_train", ["sft_zh_train"], ["sft_zh_train", "sft_en_train"]])
def test_train_role_takes_a_name_or_a_list(train):
    data = pack_data()
    data["workloads"]["sft-llama"]["datasets"]["train"] = train

    assert validate_rule_pack(data) == []
