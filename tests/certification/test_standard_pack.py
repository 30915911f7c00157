"""The standard's rule pack: its structure, its interpretations and the levels the engine derives from it."""

import pytest
import yaml

from certification.rulepack import load_rule_pack, parse_rule_pack, validate_rule_pack
from certification.verdict import CriterionResult, derive_levels, throughput_bound, workload_placements

STANDARD = load_rule_pack("standard-2024.1")
EMPTY = {"zh": "", "en": ""}


def standard_data():
    return yaml.safe_load(STANDARD.text)


def levels(track):
    return {int(level): spec for level, spec in STANDARD.data["tracks"][track]["levels"].items()}


def test_standard_pack_is_valid_draft():
    assert validate_rule_pack(standard_data()) == []
    assert STANDARD.data["status"] == "draft"
    assert STANDARD.reference_kind == "a800"


@pytest.mark.parametrize(
    ("track", "level", "workloads"),
    [
        ("finetuning", 1, {"sft-llama1-13b", "lora-llama1-13b"}),
        ("finetuning", 2, {"sft-qwen-14b", "lora-qwen-14b", "sft-sd"}),
        ("finetuning", 3, {"sft-llama3-70b", "lora-llama3-70b", "sft-qwen2-57b-a14b"}),
        ("pretraining", 1, {"pretrain-llama1-13b"}),
        ("pretraining", 2, {"pretrain-qwen-14b"}),
        ("pretraining", 3, {"pretrain-llama3-70b"}),
        ("inference", 1, {"infer-llama1-13b-bf16"}),
    ],
)
def test_level_adds_workloads(track, level, workloads):
    assert set(levels(track)[level]["workloads"]) == workloads


@pytest.mark.parametrize(("track", "ratios"), [("pretraining", [0.2, 0.4, 0.6]), ("inference", [0.2, 0.4, 0.6])])
def test_performance_bounds_per_level(track, ratios):
    assert [throughput_bound(STANDARD, track, level) for level in (1, 2, 3)] == ratios


def test_finetuning_has_no_performance_bound():
    assert [throughput_bound(STANDARD, "finetuning", level) for level in (1, 2, 3)] == [None, None, None]


@pytest.mark.parametrize(
    ("level", "data_types"),
    [(1, {"bf16"}), (2, {"bf16", "int8_weight_only"}), (3, {"bf16", "a8w8", "int4_weight_only"})],
)
def test_inference_data_types_per_level(level, data_types):
    found = {STANDARD.workload(workload_id)["data_type"] for workload_id in levels("inference")[level]["workloads"]}

    assert found == data_types
    assert set(levels("inference")[level]["data_types"]) <= data_types


def test_gpt3_is_performance_only():
    metrics = [item["metric"] for item in STANDARD.workload("infer-gpt3-175b-bf16")["criteria"]]

    assert metrics == ["qps_per_tflops_ratio"]
    assert not any(spec["model"] == "gpt3-175b" for spec in STANDARD.data["workloads"].values() if spec["kind"] != "infer" and "model" in spec)


@pytest.mark.parametrize("model", ["sd-1.4", "qwen2-57b-a14b"])
def test_sft_only_models_have_no_lora_or_pretraining(model):
    kinds = {spec["kind"] for spec in STANDARD.data["workloads"].values() if spec.get("model") == model}

    assert not kinds & {"lora", "pretrain"}
    assert "sft" in kinds or "sd_sft" in kinds


def test_sft_only_model_with_lora_rejected():
    data = standard_data()
    data["workloads"]["lora-qwen2-57b-a14b"] = {**data["workloads"]["sft-qwen2-57b-a14b"], "kind": "lora", "criteria": []}

    paths = [issue.path for issue in validate_rule_pack(data)]

    assert "workloads/lora-qwen2-57b-a14b/kind" in paths


def test_dpo_present_but_not_required():
    dpo = STANDARD.data["tracks"]["dpo"]

    assert dpo["required"] is False
    assert not dpo.get("levels")


@pytest.mark.parametrize(("choice", "architecture"), [("qwen2.5-14b", "Qwen2ForCausalLM"), ("qwen1.5-14b", "Qwen2ForCausalLM")])
def test_qwen_14b_follows_named_setting(choice, architecture):
    data = standard_data()
    data["settings"]["interpretations"]["qwen_14b_model"]["value"] = choice
    pack = parse_rule_pack(yaml.safe_dump(data, allow_unicode=True).encode("utf-8"))

    assert validate_rule_pack(data) == []
    for workload_id in ("sft-qwen-14b", "lora-qwen-14b", "pretrain-qwen-14b", "infer-qwen-14b-int8wo"):
        assert pack.model_name(workload_id) == choice
    assert pack.data["models"][choice]["architecture"] == architecture


def test_qwen_default_is_qwen25():
    assert STANDARD.model_name("sft-qwen-14b") == "qwen2.5-14b"


def test_unknown_qwen_choice_rejected():
    data = standard_data()
    data["settings"]["interpretations"]["qwen_14b_model"]["value"] = "qwen2-14b"

    paths = [issue.path for issue in validate_rule_pack(data)]

    assert "settings/interpretations/qwen_14b_model" in paths


def test_unset_digest_blocks_publishing():
    data = standard_data()
    data["status"] = "published"

    paths = {issue.path for issue in validate_rule_pack(data)}

    assert "datasets/sft_dev/sha256" in paths
    assert "tokenizers/llama/sha256" in paths
    assert "datasets/lambada/sha256" not in paths


def test_every_interpretation_has_note():
    for name, setting in STANDARD.data["settings"]["interpretations"].items():
        assert setting["note"].strip(), name


@pytest.mark.parametrize(
    ("workload_id", "key", "value"),
    [
        ("pretrain-llama1-13b", "learning_rate", 3.0e-5),
        ("pretrain-llama1-13b", "max_steps", 10000),
        ("pretrain-qwen-14b", "max_seq_length", 4096),
        ("lora-llama1-13b", "learning_rate", 3.0e-4),
        ("sft-qwen-14b", "global_batch_size", 32),
        ("lora-qwen-14b", "global_batch_size", 128),
    ],
)
def test_fixed_values_from_paddlenlp(workload_id, key, value):
    assert STANDARD.workload(workload_id)["hyperparameters"]["fixed"][key] == value


@pytest.mark.parametrize("workload_id", ["pretrain-llama1-13b", "pretrain-qwen-14b", "pretrain-llama3-70b"])
def test_pretraining_workloads_have_every_criterion(workload_id):
    metrics = {item["metric"] for item in STANDARD.workload(workload_id)["criteria"]}

    assert metrics == {"loss_window_alignment", "validation_loss_difference", "lambada_accuracy_difference", "throughput_ratio", "warm_start_stability"}


# Levels derived from the standard pack -------------------------------------


def results_for(pack, failing=(), ratios=None):
    """One synthetic criterion result per pack criterion: pass unless its id or workload is in `failing`."""
    ratios = ratios or {}
    results = []
    for workload_id in workload_placements(pack):
        for item in pack.workload(workload_id)["criteria"]:
            status = "fail" if item["id"] in failing or workload_id in failing else "pass"
            details = {"code": "synthetic"}
            if item["id"] in ratios:
                details["ratio"] = ratios[item["id"]]
            results.append(CriterionResult(item["id"], workload_id, item["metric"], status, None, None, None, EMPTY, EMPTY, details))
    return results


def test_all_passing_reaches_level_three():
    tracks = derive_levels(STANDARD, results_for(STANDARD))

    assert {name: tracks[name]["level"] for name in ("finetuning", "pretraining", "inference")} == {"finetuning": 3, "pretraining": 3, "inference": 3}
    assert tracks["dpo"] == {"level": 0, "max_level": 0, "gap": []}


@pytest.mark.parametrize(
    ("failing", "expected"),
    [
        ({"sft-sd"}, {"finetuning": 1, "pretraining": 1, "inference": 3}),
        ({"lora-llama1-13b"}, {"finetuning": 0, "pretraining": 0, "inference": 3}),
        ({"pretrain-llama3-70b.stability"}, {"finetuning": 3, "pretraining": 2, "inference": 3}),
        ({"infer-qwen-14b-int4wo"}, {"finetuning": 3, "pretraining": 3, "inference": 2}),
        ({"infer-llama1-13b-bf16.performance"}, {"finetuning": 3, "pretraining": 3, "inference": 0}),
        ({"sft-qwen2-57b-a14b"}, {"finetuning": 2, "pretraining": 2, "inference": 3}),
    ],
)
def test_levels_are_cumulative(failing, expected):
    tracks = derive_levels(STANDARD, results_for(STANDARD, failing))

    assert {name: tracks[name]["level"] for name in expected} == expected


def test_gap_names_workload_and_data_type():
    tracks = derive_levels(STANDARD, results_for(STANDARD, {"infer-qwen-14b-int4wo"}))

    gap = tracks["inference"]["gap"]

    assert {item["workload"] for item in gap} == {"infer-qwen-14b-int4wo"}
    assert {item["data_type"] for item in gap} == {"int4_weight_only"}
    assert {item["level"] for item in gap} == {3}


def test_pretraining_gap_names_finetuning():
    tracks = derive_levels(STANDARD, results_for(STANDARD, {"sft-sd"}))

    assert {"requires_track": "finetuning", "level": 2, "reached": 1} in tracks["pretraining"]["gap"]


@pytest.mark.parametrize(("ratio", "level"), [(0.59, 2), (0.6, 3), (0.39, 1), (0.4, 2), (0.19, 0), (0.2, 1)])
def test_throughput_ratio_sets_level(ratio, level):
    ids = [item["id"] for workload_id in ("pretrain-llama1-13b", "pretrain-qwen-14b", "pretrain-llama3-70b") for item in STANDARD.workload(workload_id)["criteria"] if item["metric"] == "throughput_ratio"]
    results = results_for(STANDARD, ratios={criterion_id: ratio for criterion_id in ids})

    assert derive_levels(STANDARD, results)["pretraining"]["level"] == level


def test_every_a8w8_workload_calibrates():
    a8w8 = [spec for spec in STANDARD.data["workloads"].values() if spec.get("data_type") == "a8w8"]

    assert len(a8w8) == 4
    for spec in a8w8:
        assert spec["datasets"]["calibration"] == "ptq_calibration"
        assert spec["hyperparameters"]["fixed"]["calibration_samples"] == 128
    assert STANDARD.data["datasets"]["ptq_calibration"]["sha256"] is None


@pytest.mark.parametrize(("change", "reported"), [
    (lambda spec: spec["datasets"].pop("calibration"), "workloads/infer-llama3-70b-a8w8/datasets/calibration"),
    (lambda spec: spec["datasets"].update(calibration=[]), "workloads/infer-llama3-70b-a8w8/datasets/calibration"),
    (lambda spec: spec["hyperparameters"]["fixed"].update(calibration_samples=0),
     "workloads/infer-llama3-70b-a8w8/hyperparameters/fixed/calibration_samples"),
    (lambda spec: spec["hyperparameters"]["fixed"].update(calibration_samples=12.5),
     "workloads/infer-llama3-70b-a8w8/hyperparameters/fixed/calibration_samples"),
])
def test_a8w8_without_calibration_rejected(change, reported):
    data = standard_data()
    change(data["workloads"]["infer-llama3-70b-a8w8"])

    issues = {issue.path: issue.message for issue in validate_rule_pack(data)}

    assert list(issues) == [reported]


def test_validate_pack_rejects_missing_calibration(tmp_path, capsys):
    from agent.cli import main
    from agent.errors import EXIT_REJECTED

    path = tmp_path / "standard-2024.1.yaml"
    text = STANDARD.text.replace("prompts: inference_prompts, calibration: ptq_calibration}", "prompts: inference_prompts}", 1)
    assert text != STANDARD.text
    path.write_text(text, encoding="utf-8")

    code = main(["validate-pack", str(path)])

    assert code == EXIT_REJECTED
    assert "workloads/infer-llama1-13b-a8w8/datasets/calibration: an a8w8 workload needs a calibration set" in capsys.readouterr().out
