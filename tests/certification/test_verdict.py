import json

import pytest
import yaml

from certification.bundle import open_bundle, write_bundle
from certification.criteria import RecordsInvalid, problem_zh
from certification.errors import BundleError
from certification.rulepack import parse_rule_pack
from certification.signing import Keyring, generate_key
from certification.verdict import Reference, judge
from tests.certification.runfolder import PACK, PREDICTIONS, build_run

KEY = generate_key()
KEYRING = Keyring([KEY.public_key])
PEAKS = {"fp32": 1.0}


def make_bundle(folder, pack=PACK, **options):
    run_dir = build_run(folder / "run", pack=pack, **options)
    return open_bundle(write_bundle(run_dir, folder / "run.tar", KEY).path, KEYRING)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("reference"))


def judged(tmp_path, reference, pack=PACK, peaks=PEAKS, human=None, **options):
    vendor = make_bundle(tmp_path, pack=pack, **options)
    return judge(vendor, [Reference(reference, PEAKS)], pack, peaks, human)


def status_and_code(verdict, criterion_id):
    result = verdict.criterion(criterion_id)
    return result.status, result.details["code"]


@pytest.mark.parametrize(
    ("options", "criterion_id", "status", "code"),
    [
        ({"loss_scale": 1.015}, "pretrain.loss_alignment", "pass", "loss_alignment_pass"),
        ({"loss_scale": 1.025}, "pretrain.loss_alignment", "fail", "loss_alignment_fail"),
        ({"nan_at": 150}, "pretrain.loss_alignment", "fail", "loss_non_finite"),
        ({"steps": 150}, "pretrain.loss_alignment", "fail", "run_too_short"),
        ({"steps": 150}, "pretrain.throughput", "fail", "run_too_short"),
        ({"validation_loss": 3.0099}, "pretrain.validation_loss", "pass", "validation_loss_pass"),
        ({"validation_loss": 3.0101}, "pretrain.validation_loss", "fail", "validation_loss_fail"),
        ({"validation_loss": "NaN"}, "pretrain.validation_loss", "fail", "validation_loss_fail"),
        ({"lambada_correct": 1051}, "pretrain.lambada", "pass", "lambada_pass"),
        ({"lambada_correct": 1052}, "pretrain.lambada", "fail", "lambada_fail"),
        ({"lambada_correct": 949}, "pretrain.lambada", "pass", "lambada_pass"),
        ({"lambada_correct": 948}, "pretrain.lambada", "fail", "lambada_fail"),
        ({"lambada_items": 4000}, "pretrain.lambada", "pass", "lambada_pass"),
        ({"lambada_correct": 1000, "lambada_items": 900}, "pretrain.lambada", "fail", "lambada_fail"),
        ({"tokens_per_second": 201.0}, "pretrain.throughput", "pass", "throughput_pass"),
        ({"tokens_per_second": 199.0}, "pretrain.throughput", "fail", "throughput_fail"),
        ({}, "sft.rouge", "pass", "rouge_pass"),
        ({"sft-llama": {"predictions": PREDICTIONS[:3]}}, "sft.rouge", "fail", "rouge_fail"),
        ({"lora-llama": {"predictions": [(d, p + " 额外", r) for d, p, r in PREDICTIONS]}}, "lora.rouge", "fail", "rouge_fail"),
        ({"fixed_overrides": {"learning_rate": 0.5}}, "pretrain-llama.fixed_hyperparameters", "fail", "fixed_hyperparameters_fail"),
        ({"fixed_overrides": {"max_seq_length": 128}}, "pretrain.lambada", "refused", "reference_mismatch"),
        ({"status": "failed"}, "pretrain.lambada", "fail", "workload_not_completed"),
    ],
)
def test_criterion_bounds(tmp_path, reference, options, criterion_id, status, code):
    verdict = judged(tmp_path, reference, **options)

    assert status_and_code(verdict, criterion_id) == (status, code)


def test_rouge_small_change_within_bound(tmp_path, reference):
    # One extra English word in one of four samples moves ROUGE by under a point.
    predictions = list(PREDICTIONS)
    predictions[3] = (predictions[3][0], "Paris is the capital of France indeed.", predictions[3][2])
    many = [(dataset, prediction, reference_text) for dataset, prediction, reference_text in PREDICTIONS * 10]
    many[-1] = predictions[3]
    base = make_bundle(tmp_path / "base", **{"sft-llama": {"predictions": PREDICTIONS * 10}})

    vendor = make_bundle(tmp_path / "vendor", **{"sft-llama": {"predictions": many}})
    verdict = judge(vendor, [Reference(base, PEAKS)], PACK, PEAKS)

    assert verdict.criterion("sft.rouge").status == "pass"
    assert verdict.criterion("sft.rouge").details["differences"]["rouge1"] < 0


def test_fixed_hyperparameter_key_named(tmp_path, reference):
    verdict = judged(tmp_path, reference, fixed_overrides={"learning_rate": 0.5})

    result = verdict.criterion("pretrain-llama.fixed_hyperparameters")

    assert "learning_rate" in result.explanation["en"]
    assert "learning_rate" in result.explanation["zh"]


def test_dataset_digest_off_pin_fails(tmp_path, reference):
    run_dir = build_run(tmp_path / "run")
    config_path = run_dir / "workloads/pretrain-llama/config.json"
    config = json.loads(config_path.read_text())
    config["datasets"]["validation"]["sha256"] = "f" * 64
    config_path.write_text(json.dumps(config))
    run_path = run_dir / "run.json"
    run = json.loads(run_path.read_text())
    run["inputs"]["dataset validation_wiki"]["sha256"] = "f" * 64
    run_path.write_text(json.dumps(run))
    vendor = open_bundle(write_bundle(run_dir, tmp_path / "run.tar", KEY).path, KEYRING)

    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)

    result = verdict.criterion("pretrain.validation_loss")
    assert (result.status, result.details["code"]) == ("fail", "input_digest_mismatch")
    assert "validation_wiki" in result.explanation["en"]


def test_missing_workload_reported(tmp_path, reference):
    verdict = judged(tmp_path, reference, workloads=("sft-llama", "lora-llama"))

    assert status_and_code(verdict, "pretrain.loss_alignment") == ("fail", "workload_missing")
    assert verdict.tracks["finetuning"]["level"] == 1
    assert verdict.tracks["pretraining"]["level"] == 0
    assert verdict.failed


def test_pretraining_needs_finetuning_level(tmp_path, reference):
    verdict = judged(tmp_path, reference, **{"sft-llama": {"predictions": PREDICTIONS[:1]}})

    gap = verdict.tracks["pretraining"]["gap"]

    assert verdict.tracks["finetuning"]["level"] == 0
    assert verdict.tracks["pretraining"]["level"] == 0
    assert {"requires_track": "finetuning", "level": 1, "reached": 0} in gap


def test_all_passing_reaches_level_one(tmp_path, reference):
    verdict = judged(tmp_path, reference)

    built = {"pretrain-llama", "sft-llama", "lora-llama"}
    assert all(result.status in ("pass", "not_applicable") for result in verdict.criteria if result.workload in built)
    assert verdict.tracks["pretraining"] == {"level": 1, "max_level": 1, "gap": []}
    assert verdict.rule_pack == {"name": PACK.name, "sha256": PACK.sha256}
    assert verdict.reference_kind == "cpu-demo"


def test_missing_reference_workload_refused(tmp_path, reference):
    partial_reference = make_bundle(tmp_path / "reference", workloads=("sft-llama", "lora-llama"))
    vendor = make_bundle(tmp_path / "vendor")

    verdict = judge(vendor, [Reference(partial_reference, PEAKS)], PACK, PEAKS)

    assert status_and_code(verdict, "pretrain.lambada") == ("refused", "reference_missing")


def test_missing_peak_refused(tmp_path, reference):
    verdict = judged(tmp_path, reference, peaks={"bf16": 312.0})

    assert status_and_code(verdict, "pretrain.throughput") == ("refused", "peak_missing")


def test_peaks_scale_ratio(tmp_path, reference):
    verdict = judged(tmp_path, reference, peaks={"fp32": 4.0}, tokens_per_second=1000.0)

    result = verdict.criterion("pretrain.throughput")

    assert result.details["ratio"] == pytest.approx(0.25)
    assert result.status == "pass"


def test_other_rule_pack_refused(tmp_path, reference):
    other = edited_pack(lambda data: data["settings"]["validation_loss"].update(absolute_error_max=0.02))

    verdict = judge(make_bundle(tmp_path), [Reference(reference, PEAKS)], other, PEAKS)

    assert {result.status for result in verdict.criteria} == {"refused"}
    assert verdict.criteria[0].details["code"] == "rule_pack_mismatch"


def edited_pack(edit):
    data = yaml.safe_load(PACK.text)
    edit(data)
    return parse_rule_pack(yaml.safe_dump(data, allow_unicode=True).encode("utf-8"))


def human_pack(enabled):
    def edit(data):
        data["settings"]["human_evaluation"]["enabled"] = enabled
        data["workloads"]["sft-llama"]["criteria"].append({"id": "sft.human", "metric": "human_gsb"})

    return edited_pack(edit)


def judged_human(tmp_path_factory, enabled, human):
    """Judge an SFT vendor run against an SFT reference run under human_pack(enabled), with the human evaluation counts `human`."""
    pack = human_pack(enabled)
    folder = tmp_path_factory.mktemp("human")
    reference = make_bundle(folder / "reference", pack=pack, workloads=("sft-llama",))
    vendor = make_bundle(folder / "vendor", pack=pack, workloads=("sft-llama",))
    return judge(vendor, [Reference(reference, PEAKS)], pack, PEAKS, human)


@pytest.mark.parametrize(
    ("enabled", "human", "status", "code"),
    [
        (False, None, "not_applicable", "human_disabled"),
        (True, None, "pending", "human_pending"),
        (True, {"sft.human": {"good": 60, "same": 100, "bad": 50, "signed_off_by": "Li Lei"}}, "pass", "human_pass"),
        (True, {"sft.human": {"good": 50, "same": 100, "bad": 70, "signed_off_by": "Li Lei"}}, "fail", "human_fail"),
        (True, {"sft.human": {"good": 10, "same": 100, "bad": 10, "signed_off_by": "Li Lei"}}, "fail", "human_fail"),
        (True, {"sft.human": {"good": 60, "same": 100, "bad": 50}}, "fail", "human_fail"),
    ],
)
def test_human_gsb(tmp_path_factory, enabled, human, status, code):
    verdict = judged_human(tmp_path_factory, enabled, human)

    assert status_and_code(verdict, "sft.human") == (status, code)


def test_verdict_is_deterministic_json(tmp_path, reference):
    vendor = make_bundle(tmp_path, loss_scale=1.01, nan_at=None)

    first = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).to_dict()
    second = judge(vendor, [(reference, PEAKS)], PACK, PEAKS).to_dict()

    assert first == second
    assert json.loads(json.dumps(first, allow_nan=False)) == first


def test_every_result_has_both_languages(tmp_path, reference):
    verdict = judged(tmp_path, reference, nan_at=3, workloads=("pretrain-llama",))

    for result in verdict.criteria:
        assert result.explanation["zh"] and result.explanation["en"]
        assert result.hint["zh"] and result.hint["en"]
        assert "{" not in result.explanation["en"]


def test_reference_without_config_refused(tmp_path, reference):
    run_dir = build_run(tmp_path / "reference")
    (run_dir / "workloads" / "pretrain-llama" / "config.json").unlink()
    broken_reference = open_bundle(write_bundle(run_dir, tmp_path / "reference.tar", KEY).path, KEYRING)
    vendor = make_bundle(tmp_path / "vendor")

    verdict = judge(vendor, [Reference(broken_reference, PEAKS)], PACK, PEAKS)

    assert status_and_code(verdict, "pretrain.lambada") == ("refused", "reference_unusable")


def test_unplanned_workload_pending(tmp_path, reference):
    verdict = judged(tmp_path, reference)

    assert status_and_code(verdict, "sd-sft-digits.fixed_hyperparameters") == ("pending", "workload_not_run")
    assert verdict.tracks["finetuning"]["level"] == 1
    assert not verdict.failed


@pytest.mark.parametrize(("options", "criterion_id", "chinese", "english"), [
    ({"fixed_overrides": {"learning_rate": 0.5}}, "pretrain-llama.fixed_hyperparameters",
     "固定超参数与规则包不一致（运行值 / 规则包值）：learning_rate 0.5 / ", "Fixed hyperparameters differ from the rule pack (run / pack): learning_rate 0.5 / "),
    ({"fixed_overrides": {"max_seq_length": 128}}, "pretrain.lambada",
     "与参考结果的运行条件不同，无法比较（厂商 / 参考）：max_seq_length 128 / ", "cannot be compared (vendor / reference): max_seq_length 128 / "),
], ids=["fixed_hyperparameters", "run_conditions"])
def test_differences_labelled_in_each_language(tmp_path, reference, options, criterion_id, chinese, english):
    result = judged(tmp_path, reference, **options).criterion(criterion_id)

    assert chinese in result.explanation["zh"]
    assert english in result.explanation["en"]
    for word in ("found", "pack", "vs", "reference"):
        assert word not in result.explanation["zh"]


def test_unusable_reference_in_chinese(tmp_path):
    broken_reference = make_bundle(tmp_path / "reference", validation_loss="NaN")
    vendor = make_bundle(tmp_path / "vendor")

    result = judge(vendor, [Reference(broken_reference, PEAKS)], PACK, PEAKS).criterion("pretrain.validation_loss")

    assert result.details["code"] == "reference_unusable"
    assert result.explanation["zh"] == "参考结果无法使用：参考验证集损失缺失或不是有限值。"
    assert result.explanation["en"] == "The reference result cannot be used: the reference validation loss is missing or not finite."


def test_reference_of_other_pack_in_chinese(tmp_path):
    other = yaml.safe_load(yaml.safe_dump(PACK.data))
    other["version"] = "9999.1"
    other_pack = parse_rule_pack(yaml.safe_dump(other).encode("utf-8"))
    other_reference = make_bundle(tmp_path / "reference", pack=other_pack)
    vendor = make_bundle(tmp_path / "vendor")

    result = judge(vendor, [Reference(other_reference, PEAKS)], PACK, PEAKS).criterion("pretrain.lambada")

    assert result.details["code"] == "reference_unusable"
    assert result.explanation["zh"].startswith(f"参考结果无法使用：参考结果包 {other_reference.bundle_id} 是用规则包 ")
    assert "was made" not in result.explanation["zh"]


def bundle_without(folder, relative):
    run_dir = build_run(folder / "run")
    (run_dir / relative).unlink()
    return open_bundle(write_bundle(run_dir, folder / "run.tar", KEY).path, KEYRING)


def test_reference_reader_problem_in_chinese(tmp_path):
    broken_reference = bundle_without(tmp_path / "reference", "workloads/pretrain-llama/lambada.jsonl")
    vendor = make_bundle(tmp_path / "vendor")

    result = judge(vendor, [Reference(broken_reference, PEAKS)], PACK, PEAKS).criterion("pretrain.lambada")

    assert result.details["code"] == "reference_unusable"
    assert result.explanation["zh"] == "参考结果无法使用：缺少 workloads/pretrain-llama/lambada.jsonl。"
    assert result.explanation["en"] == "The reference result cannot be used: workloads/pretrain-llama/lambada.jsonl is missing."


def test_vendor_records_invalid_in_chinese(tmp_path, reference):
    vendor = bundle_without(tmp_path / "vendor", "workloads/pretrain-llama/lambada.jsonl")

    result = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).criterion("pretrain.lambada")

    assert result.details["code"] == "records_invalid"
    assert result.explanation["zh"] == "工作负载 pretrain-llama 的记录无效：缺少 workloads/pretrain-llama/lambada.jsonl。"
    assert "is missing" in result.explanation["en"]


@pytest.mark.parametrize("options, criterion_id, chinese, english", [
    ({"validation_loss": "low"}, "pretrain.validation_loss",
     "工作负载 pretrain-llama 的记录无效：无效的数值 'low'：应为数字、'NaN'、'Infinity' 或 '-Infinity'。",
     "The records of workload pretrain-llama are invalid: invalid number 'low': expected a number, 'NaN', 'Infinity' or '-Infinity'."),
    ({"validation_loss": [3.0]}, "pretrain.validation_loss",
     "工作负载 pretrain-llama 的记录无效：无效的数值 [3.0]：应为数字、'NaN'、'Infinity' 或 '-Infinity'。",
     "The records of workload pretrain-llama are invalid: invalid number [3.0]: expected a number, 'NaN', 'Infinity' or '-Infinity'."),
    # An integer of 310 digits, which JSON allows but a float cannot hold.
    ({"validation_loss": 10**309}, "pretrain.validation_loss",
     f"工作负载 pretrain-llama 的记录无效：无效的数值 {10**309}：超出浮点数的范围。",
     f"The records of workload pretrain-llama are invalid: invalid number {10**309}: it is outside the range of a float."),
], ids=["string", "list", "out_of_range"])
def test_malformed_metric_value_named_in_both_languages(tmp_path, reference, options, criterion_id, chinese, english):
    result = judged(tmp_path, reference, **options).criterion(criterion_id)

    assert result.details["code"] == "records_invalid"
    assert result.explanation["zh"] == chinese
    assert result.explanation["en"] == english
    assert result.hint["zh"] == "用本版本的 agent 重新运行该工作负载。"


def bundle_edited(folder, relative, edit):
    """Return a verified bundle of a run whose file `relative` went through `edit` (each line of a .jsonl file, or the whole .json object)."""
    run_dir = build_run(folder / "run")
    path = run_dir / relative
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for row in rows:
            edit(row)
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
        edit(data)
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return open_bundle(write_bundle(run_dir, folder / "run.tar", KEY).path, KEYRING)


# Values that the verdict engine reads outside the metric functions, where a bare ValueError or TypeError would be
# named in Chinese only by its type.
@pytest.mark.parametrize("relative, edit, criterion_id, chinese, english", [
    ("workloads/infer-llama/requests.jsonl", lambda row: row.update(sent="soon"), "infer.qps",
     "requests.jsonl 中试验 0 的请求 0 的 sent 是 'soon'，不是数字", "request 0 of trial 0 in requests.jsonl has sent 'soon', not a number"),
    ("workloads/infer-llama/requests.jsonl", lambda row: row.update(trial="one"), "infer.qps",
     "requests.jsonl 中的请求 0 的 trial 是 'one'，不是整数", "request 0 in requests.jsonl has trial 'one', not an integer"),
    ("workloads/infer-llama/search.json", lambda search: search["trials"][0].update(level="high"), "infer.qps",
     "search.json 中的试验 0 的 level 是 'high'，不是数字", "trial 0 in search.json has level 'high', not a number"),
    ("workloads/infer-llama/search.json", lambda search: search["trials"][0].update(duration_seconds=None), "infer.qps",
     "search.json 中的试验 0 的 duration_seconds 是 None，不是数字", "trial 0 in search.json has duration_seconds None, not a number"),
    ("workloads/sft-llama/predictions.jsonl", lambda row: row.update(dataset=["a"]), "sft.rouge",
     "predictions.jsonl 中有一条记录的 dataset 是 ['a']、index 是 0，不是名称和编号",
     "a record of predictions.jsonl has the dataset ['a'] and index 0, not a name and a number"),
    ("workloads/sft-llama/predictions.jsonl", lambda row: row.update(prediction=7), "sft.rouge",
     "predictions.jsonl 中 sft_en_dev 的样本 2 的 prediction 是 7，不是文本", "sample 2 of sft_en_dev in predictions.jsonl has the prediction 7, not text"),
    ("workloads/pretrain-llama/steps.jsonl", lambda row: row.update(loss=None), "pretrain.loss_alignment",
     "第 1 步没有 loss", "step 1 has no loss"),
    ("workloads/pretrain-llama/validation.json", lambda record: record.update(loss=None), "pretrain.validation_loss",
     "validation.json 没有 loss", "validation.json has no loss"),
], ids=["request_time", "request_trial", "trial_level", "trial_duration", "prediction_key", "prediction_text", "step_loss", "validation_loss"])
def test_malformed_record_named_in_both_languages(tmp_path, reference, relative, edit, criterion_id, chinese, english):
    vendor = bundle_edited(tmp_path, relative, edit)

    result = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).criterion(criterion_id)

    assert result.details["code"] == "records_invalid"
    assert result.explanation["zh"] == f"工作负载 {relative.split('/')[1]} 的记录无效：{chinese}。"
    assert result.explanation["en"] == f"The records of workload {relative.split('/')[1]} are invalid: {english}."


def test_malformed_reference_prediction_in_chinese(tmp_path, reference):
    broken_reference = bundle_edited(tmp_path / "reference", "workloads/sft-llama/predictions.jsonl", lambda row: row.update(reference=7))

    result = judge(reference, [Reference(broken_reference, PEAKS)], PACK, PEAKS).criterion("sft.rouge")

    assert result.details["code"] == "reference_unusable"
    assert result.explanation["zh"] == "参考结果无法使用：predictions.jsonl 中 sft_zh_dev 的样本 0 的 reference 是 7，不是文本。"


@pytest.mark.parametrize("error, chinese", [
    (RecordsInvalid("steps.jsonl is missing", "缺少 steps.jsonl"), "缺少 steps.jsonl"),
    (BundleError("json_invalid", "workloads/a/steps.jsonl", line=3, column=5, problem="Expecting value"), "workloads/a/steps.jsonl 第 3 行第 5 列的 JSON 无效"),
    (BundleError("json_non_finite", "workloads/a/steps.jsonl", line=2), "workloads/a/steps.jsonl 第 2 行有未加引号的 NaN 或 Infinity"),
    (BundleError("file_not_in_bundle", "workloads/a/result.json"), "结果包中没有文件 workloads/a/result.json"),
    (BundleError("member_link", "workloads/a/x"), "member_link：workloads/a/x"),
    (KeyError("loss"), "记录中缺少键 'loss'"),
    (TypeError("float() argument must be a string or a real number, not 'dict'"), "记录中的值无法解析（TypeError）"),
], ids=["records_invalid", "json_invalid", "json_non_finite", "file_not_in_bundle", "other_code", "key_error", "type_error"])
def test_reader_problem_chinese_text(error, chinese):
    assert problem_zh(error) == chinese


def test_missing_result_status_in_chinese(tmp_path, reference):
    vendor = bundle_without(tmp_path / "vendor", "workloads/pretrain-llama/result.json")

    result = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).criterion("pretrain.lambada")

    assert result.details["code"] == "workload_not_completed"
    assert result.explanation["zh"] == "工作负载 pretrain-llama 未完成（状态：缺少 result.json）。"
    assert result.explanation["en"] == "Workload pretrain-llama has status missing result.json."


# Record values of the wrong shape or beyond the float range, which once escaped judge() as an exception.
@pytest.mark.parametrize("relative, edit, criterion_id, chinese, english", [
    ("workloads/pretrain-llama/config.json", lambda config: config.update(hyperparameters="fast"), "pretrain-llama.fixed_hyperparameters",
     "config.json 的 hyperparameters 是 'fast'，不是 JSON 对象", "config.json has hyperparameters 'fast', not an object"),
    ("workloads/sft-llama/config.json", lambda config: config["hyperparameters"].update(fixed=[1]), "sft-llama.fixed_hyperparameters",
     "config.json 的 hyperparameters.fixed 是 [1]，不是 JSON 对象", "config.json has hyperparameters.fixed [1], not an object"),
    ("workloads/lora-llama/config.json", lambda config: config["hyperparameters"].update(free="x"), "lora.rouge",
     "config.json 的 hyperparameters.free 是 'x'，不是 JSON 对象", "config.json has hyperparameters.free 'x', not an object"),
    ("workloads/infer-llama/config.json", lambda config: config["hyperparameters"].update(fixed=True), "infer.qps",
     "config.json 的 hyperparameters.fixed 是 True，不是 JSON 对象", "config.json has hyperparameters.fixed True, not an object"),
    ("workloads/pretrain-llama/steps.jsonl", lambda row: row.update(loss=1e308), "pretrain.loss_alignment",
     "第 1 步的 loss 是 1e+308，绝对值大于 1e+100", "step 1 has loss 1e+308, larger in magnitude than 1e+100"),
    ("workloads/pretrain-llama/steps.jsonl", lambda row: row.update(step_seconds=1e308), "pretrain.throughput",
     "第 1 步的 step_seconds 是 1e+308，绝对值大于 1e+100", "step 1 has step_seconds 1e+308, larger in magnitude than 1e+100"),
    ("workloads/pretrain-llama/steps.jsonl", lambda row: row.update(tokens_per_second_per_card=-1e308), "pretrain.throughput",
     "第 1 步的 tokens_per_second_per_card 是 -1e+308，绝对值大于 1e+100",
     "step 1 has tokens_per_second_per_card -1e+308, larger in magnitude than 1e+100"),
    ("workloads/pretrain-llama/steps.jsonl", lambda row: row.update(tokens_per_second_per_card="Infinity" if row["step"] % 2 else "-Infinity"),
     "pretrain.throughput", "第 1 步的 tokens_per_second_per_card 是 'Infinity'，不是有限数",
     "step 1 has tokens_per_second_per_card 'Infinity', not a finite number"),
], ids=["hyperparameters", "fixed", "free", "fixed_inference", "loss", "step_seconds", "tokens_per_second", "infinite_rates"])
def test_malformed_shape_or_magnitude_named(tmp_path, reference, relative, edit, criterion_id, chinese, english):
    vendor = bundle_edited(tmp_path, relative, edit)

    result = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).criterion(criterion_id)

    workload = relative.split("/")[1]
    assert result.status == "fail"
    assert result.details["code"] == "records_invalid"
    assert result.explanation["zh"] == f"工作负载 {workload} 的记录无效：{chinese}。"
    assert result.explanation["en"] == f"The records of workload {workload} are invalid: {english}."
    assert result.hint["en"] == "Run the workload again with this agent version."


@pytest.mark.parametrize("relative, edit, criterion_id", [
    ("workloads/pretrain-llama/config.json", lambda config: config.update(hyperparameters=["fast"]), "pretrain.loss_alignment"),
    ("workloads/pretrain-llama/steps.jsonl", lambda row: row.update(loss=1e308), "pretrain.loss_alignment"),
    ("workloads/pretrain-llama/steps.jsonl", lambda row: row.update(tokens_per_second_per_card=1e308), "pretrain.throughput"),
], ids=["hyperparameters", "loss", "tokens_per_second"])
def test_malformed_reference_shape_or_magnitude_refused(tmp_path, reference, relative, edit, criterion_id):
    broken_reference = bundle_edited(tmp_path / "reference", relative, edit)

    result = judge(reference, [Reference(broken_reference, PEAKS)], PACK, PEAKS).criterion(criterion_id)

    assert result.status == "refused"
    assert result.details["code"] == "reference_unusable"
    assert "无法解析" not in result.explanation["zh"]


def test_fixed_hyperparameter_beyond_float_range_differs(tmp_path, reference):
    vendor = bundle_edited(tmp_path, "workloads/pretrain-llama/config.json", lambda config: config["hyperparameters"]["fixed"].update(seed=10**400))

    result = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).criterion("pretrain-llama.fixed_hyperparameters")

    assert result.status == "fail"
    assert result.details["code"] == "fixed_hyperparameters_fail"
    assert result.details["differences"] == [f"seed {10**400!r} / {PACK.workload('pretrain-llama')['hyperparameters']['fixed']['seed']!r}"]


@pytest.mark.parametrize("stated", [[312.0], "312", 5, {"fp32": 10**400}], ids=["list", "string", "number", "huge_integer"])
def test_malformed_stated_peaks_not_flagged(tmp_path, reference, stated):
    vendor = bundle_edited(tmp_path, "environment.json", lambda environment: environment.update(peak_tflops=stated))

    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)

    assert verdict.flags == []
    assert verdict.criterion("pretrain.throughput").details["code"] == "throughput_pass"


@pytest.mark.parametrize("edit", [
    lambda row: row.update(end="Infinity"),
    lambda row: row.update(end=1e308) if row["index"] == 0 else row.update(sent=-1e308, first_token=-1e308) if row["index"] == 1 else None,
], ids=["infinite_end", "wall_time_beyond_float_range"])
def test_reference_request_times_refused(tmp_path, reference, edit):
    broken_reference = bundle_edited(tmp_path / "reference", "workloads/infer-llama/requests.jsonl", edit)

    result = judge(reference, [Reference(broken_reference, PEAKS)], PACK, PEAKS).criterion("infer.qps")

    assert result.status == "refused"
    assert result.details["code"] == "reference_unusable"


def test_infinite_request_time_named(tmp_path, reference):
    vendor = bundle_edited(tmp_path, "workloads/infer-llama/requests.jsonl", lambda row: row.update(end="Infinity"))

    result = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).criterion("infer.qps")

    assert result.details["code"] == "records_invalid"
    assert result.explanation["en"] == ("The records of workload infer-llama are invalid: "
                                        "request 0 of trial 0 in requests.jsonl has end 'Infinity', not a finite time.")
    assert result.explanation["zh"] == "工作负载 infer-llama 的记录无效：requests.jsonl 中试验 0 的请求 0 的 end 是 'Infinity'，不是有限的时间。"
