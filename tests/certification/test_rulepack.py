import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(("init_from", "reported", "values"), [
    ({"sft-llama": "sft-llama"}, "workloads/sft-llama/init_from", {"workload": "sft-llama", "chain": "sft-llama -> sft-llama"}),
    ({"pretrain-llama": "sft-llama"}, "workloads/pretrain-llama/init_from",
     {"workload": "pretrain-llama", "chain": "pretrain-llama -> sft-llama -> pretrain-llama"}),
])
def test_init_from_cycle_issue(init_from, reported, values):
    data = pack_data()
    for workload_id, parent in init_from.items():
        data["workloads"][workload_id]["init_from"] = parent

    issues = [issue for issue in validate_rule_pack(data) if issue.code == "init_from_cycle"]

    assert [issue.path for issue in issues] == [reported]
    assert dict(issues[0].values) == values


@pytest.mark.parametrize(("levels", "expected"), [
    ([1, 3], [{"track": "finetuning", "levels": "1, 3", "level": "2", "highest": "3"}]),
    ([2], [{"track": "finetuning", "levels": "2", "level": "1", "highest": "2"}]),
    ([3], [{"track": "finetuning", "levels": "3", "level": "1", "highest": "3"},
           {"track": "finetuning", "levels": "3", "level": "2", "highest": "3"}]),
])
def test_level_gap_issue(levels, expected):
    data = pack_data()
    entries = list(data["tracks"]["finetuning"]["levels"].values())
    data["tracks"]["finetuning"]["levels"] = {level: entries[index % len(entries)] for index, level in enumerate(levels)}

    issues = [issue for issue in validate_rule_pack(data) if issue.code == "level_missing"]

    assert [issue.path for issue in issues] == ["tracks/finetuning/levels"] * len(expected)
    assert [dict(issue.values) for issue in issues] == expected


def test_required_track_level_issue():
    data = pack_data()
    data["tracks"]["pretraining"]["levels"][3] = {"workloads": ["pretrain-llama"]}
    data["tracks"]["pretraining"]["levels"][2] = {"workloads": []}

    issues = [issue for issue in validate_rule_pack(data) if issue.code == "required_track_level_missing"]

    assert [issue.path for issue in issues] == ["tracks/pretraining/levels/3"]
    assert dict(issues[0].values) == {"track": "pretraining", "required_track": "finetuning", "level": "3"}


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


@pytest.mark.parametrize(("schema_error", "reference_error", "expected"), [
    ((("settings", "loss_alignment", "window"), "lots"), (("workloads", "sft-llama", "model"), "gpt-5"),
     {("settings/loss_alignment/window", "schema_type"), ("workloads/sft-llama/model", "unknown_model")}),
    ((("status",), "wobbly"), (("tracks", "finetuning", "levels", 1, "workloads"), ["absent"]),
     {("status", "schema_enum"), ("tracks/finetuning/levels/1/workloads", "unknown_workload")}),
    ((("workloads", "sft-llama", "kind"), DELETE), (("workloads", "pretrain-llama", "datasets", "train"), "ghost"),
     {("workloads/sft-llama", "schema_required"), ("workloads/pretrain-llama/datasets/train", "unknown_dataset")}),
    ((("datasets", "lambada", "sha256"), "abc"), (("workloads", "pretrain-llama", "datasets", "validation"), "ghost"),
     {("datasets/lambada/sha256", "schema_invalid"), ("workloads/pretrain-llama/datasets/validation", "unknown_dataset")}),
    ((("models", "llama-tiny", "architecture"), 7), (("workloads", "lora-llama", "criteria", 0, "id"), "sft.rouge"),
     {("models/llama-tiny/architecture", "schema_type"), ("workloads/lora-llama/criteria/0/id", "criterion_id_duplicate")}),
    ((("tracks", "finetuning", "levels", 1, "workloads"), DELETE), (("settings", "throughput", "mean_steps"), [9, 3]),
     {("tracks/finetuning/levels/1", "schema_required"), ("settings/throughput/mean_steps", "mean_steps_reversed")}),
])
def test_schema_and_reference_problems_together(schema_error, reference_error, expected):
    data = pack_data()
    set_path(data, *schema_error)
    set_path(data, *reference_error)

    issues = {(issue.path, issue.code) for issue in validate_rule_pack(data)}

    assert issues == expected


@pytest.mark.parametrize(("path", "value", "reported"), [
    (("workloads", "sft-llama", "datasets"), "sft_zh_train", "workloads/sft-llama/datasets"),
    (("workloads", "sft-llama", "criteria"), {"id": "sft.rouge"}, "workloads/sft-llama/criteria"),
    (("workloads", "sft-llama", "hyperparameters"), DELETE, "workloads/sft-llama"),
    (("settings", "loss_alignment"), [200, 20], "settings/loss_alignment"),
    (("settings",), DELETE, "(top level)"),
    (("models",), ["llama-tiny"], "models"),
    (("tracks", "finetuning", "levels", 1), "sft-llama", "tracks/finetuning/levels/1"),
])
def test_reference_checks_skip_ill_formed_part(path, value, reported):
    data = pack_data()
    set_path(data, path, value)

    issues = validate_rule_pack(data)

    assert reported in [issue.path for issue in issues]
    assert all(issue.code.startswith("schema_") for issue in issues), issues


def value_paths(value, path=()):
    """Yield the path of every value inside parsed YAML, containers included."""
    yield path
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        items = ()
    for key, item in items:
        yield from value_paths(item, (*path, key))


PACKS = {name: yaml.safe_load(load_rule_pack(name).text) for name in ("demo-2026.1", "standard-2024.1")}
PACK_PATHS = [(name, path) for name, data in PACKS.items() for path in value_paths(data) if path]
REPLACEMENTS = st.sampled_from([DELETE, None, "ghost", 7, -1.5, True, [], ["ghost"], [7], {}, {"ghost": 7}])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PACK_PATHS), REPLACEMENTS), min_size=1, max_size=3))
def test_any_change_gives_issues_not_exceptions(changes):
    """The cross-reference checks read no value that the schema rejected, whatever a change breaks."""
    data = copy.deepcopy(PACKS[changes[0][0][0]])
    for (name, path), value in changes:
        if name == changes[0][0][0]:
            set_existing_path(data, path, value)

    issues = validate_rule_pack(data)

    assert all(issue.code for issue in issues)


def set_existing_path(data, path, value):
    """Set `path` like set_path, unless an earlier change removed or replaced one of its parents."""
    *parents, last = path
    for part in parents:
        if not isinstance(data, (dict, list)) or part not in (data if isinstance(data, dict) else range(len(data))):
            return
        data = data[part]
    if (last in data) if isinstance(data, dict) else (isinstance(data, list) and isinstance(last, int) and last < len(data)):
        set_path(data, (last,), value)
