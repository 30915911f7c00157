"""The inference verdict: QPS per TFLOPS recomputed from request records, and data types a device lacks."""

from __future__ import annotations

import pytest

from certification.bundle import open_bundle, write_bundle
from certification.criteria import RecordsInvalid, WorkloadRecords
from certification.criteria_inference import qps_from_records
from certification.rulepack import load_rule_pack
from certification.signing import Keyring, generate_key
from certification.verdict import Reference, judge
from tests.certification.runfolder import PACK, build_run

KEY = generate_key()
KEYRING = Keyring([KEY.public_key])
PEAKS = {"fp32": 1.0}
SETTINGS = PACK.data["settings"]["inference"]


def make_bundle(folder, pack=PACK, **options):
    run_dir = build_run(folder / "run", pack=pack, **options)
    return open_bundle(write_bundle(run_dir, folder / "run.tar", KEY).path, KEYRING)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("reference"))


def criterion(tmp_path, reference, criterion_id="infer.qps", peaks=PEAKS, **options):
    vendor = make_bundle(tmp_path, **options)
    return judge(vendor, [Reference(reference, PEAKS)], PACK, peaks).criterion(criterion_id)


def test_qps_matching_runs_pass(tmp_path, reference):
    result = criterion(tmp_path, reference)
    assert result.status == "pass"
    assert result.details["code"] == "qps_pass"
    assert result.details["ratio"] == pytest.approx(1.0)
    assert result.details["vendor"]["level"] == 8.0


def test_qps_ratio_uses_peak(tmp_path, reference):
    result = criterion(tmp_path, reference, peaks={"fp32": 10.0})
    assert result.status == "fail"
    assert result.details["code"] == "qps_fail"
    assert result.details["ratio"] == pytest.approx(0.1)


def test_qps_slower_requests_lower_ratio(tmp_path, reference):
    result = criterion(tmp_path, reference, request_spacing=2.0)
    assert result.details["ratio"] == pytest.approx(0.52, abs=0.03)


def test_failed_confirmation_drops_level(tmp_path, reference):
    result = criterion(tmp_path, reference, slow_confirmation=True)
    assert result.details["code"] == "qps_no_level"
    assert result.status == "fail"


def test_qps_peak_missing_refused(tmp_path, reference):
    result = criterion(tmp_path, reference, peaks={"bf16": 312.0})
    assert result.status == "refused"
    assert result.details["code"] == "peak_missing"


def test_not_supported_names_data_type(tmp_path, reference):
    run_dir = build_run(tmp_path / "run", **{"infer-llama": {"status": "not_supported"}})
    result_path = run_dir / "workloads" / "infer-llama" / "result.json"
    result_path.write_text(result_path.read_text().replace('"summary": {}', '"summary": {"data_type": "fp32", "not_supported_reason": "no kernel"}'))
    vendor = open_bundle(write_bundle(run_dir, tmp_path / "run.tar", KEY).path, KEYRING)
    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)
    for criterion_id in ("infer.lambada", "infer.qps"):
        assert verdict.criterion(criterion_id).details["code"] == "data_type_not_supported"
        assert verdict.criterion(criterion_id).status == "fail"
    assert verdict.to_dict()["tracks"]["inference"]["level"] == 0
    assert "no kernel" in verdict.criterion("infer.qps").explanation["en"]


def test_inference_level_one_reached(tmp_path, reference):
    vendor = make_bundle(tmp_path)
    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)
    assert verdict.to_dict()["tracks"]["inference"]["level"] == 1
    assert verdict.criterion("infer.lambada").status == "pass"


def test_short_trial_does_not_count(tmp_path):
    pack = load_rule_pack("demo-2026.1")
    bundle = make_bundle(tmp_path)
    settings = {**pack.data["settings"]["inference"], "min_duration_seconds": 10}
    result = qps_from_records(WorkloadRecords(bundle, "infer-llama"), settings)
    assert result.level is None
    assert "at least 10 s" in result.reason


def test_search_without_trials_is_invalid(tmp_path):
    run_dir = build_run(tmp_path / "run")
    (run_dir / "workloads" / "infer-llama" / "search.json").write_text('{"status": "completed"}\n')
    bundle = open_bundle(write_bundle(run_dir, tmp_path / "run.tar", KEY).path, KEYRING)
    with pytest.raises(RecordsInvalid):
        qps_from_records(WorkloadRecords(bundle, "infer-llama"), SETTINGS)


@pytest.mark.parametrize(("key", "value"), [("load_model", "bursty"), ("time_to_first_token_percentile", 120), ("surprise", 1)])
def test_pack_rejects_bad_inference_settings(key, value):
    import copy

    from certification.rulepack import validate_rule_pack

    data = copy.deepcopy(PACK.data)
    data["settings"]["inference"][key] = value
    paths = [issue.path for issue in validate_rule_pack(data)]
    assert any(path.startswith("settings/inference") for path in paths), paths


def test_no_level_message_in_both_languages(tmp_path, reference):
    result = criterion(tmp_path, reference, slow_confirmation=True)
    required = 1 + SETTINGS.get("confirmations", 2)
    limit = SETTINGS["time_to_first_token_max_seconds"]

    assert result.explanation["en"].startswith(f"No load level was confirmed: of {len(result.details['vendor_trials'])} trials, "
                                               f"no level had at least {required} trials")
    assert f"TTFT ≤ {limit} s." in result.explanation["en"]
    assert result.explanation["zh"].startswith(f"没有得到确认的负载水平：共 {len(result.details['vendor_trials'])} 次试验")
    assert "trials" not in result.explanation["zh"]
    assert "passed" not in result.explanation["zh"]


def test_short_trial_message_in_both_languages(tmp_path, reference):
    import dataclasses
    import json

    data = json.loads(json.dumps(PACK.data))
    data["settings"]["inference"]["min_duration_seconds"] = 10
    pack = dataclasses.replace(PACK, data=data)
    vendor = make_bundle(tmp_path)

    result = judge(vendor, [Reference(reference, PEAKS)], pack, PEAKS).criterion("infer.qps")

    assert result.details["code"] == "qps_trial_too_short"
    assert "but the rule pack requires at least 10 s" in result.explanation["en"]
    assert "而规则包要求至少 10 秒" in result.explanation["zh"]
    assert "measured" not in result.explanation["zh"]


def test_reference_without_level_in_both_languages(tmp_path):
    reference = make_bundle(tmp_path / "reference", slow_confirmation=True)
    vendor = make_bundle(tmp_path / "vendor")

    result = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).criterion("infer.qps")

    assert result.status == "refused"
    assert result.details["code"] == "qps_reference_no_level"
    assert result.explanation["en"].startswith("The reference result cannot be used. Reference run: No load level was confirmed: of ")
    assert result.explanation["zh"].startswith("参考结果无法使用。参考运行：没有得到确认的负载水平：共 ")
    assert "reference" not in result.explanation["zh"]
    assert "trials" not in result.explanation["zh"]


@pytest.mark.parametrize(("peaks", "reference_peaks", "english", "chinese"), [
    ({"bf16": 312.0}, PEAKS, "The vendor card's peak fp32 TFLOPS is missing.", "缺少厂商加速卡的 fp32 峰值 TFLOPS。"),
    (PEAKS, {"bf16": 312.0}, "The reference card's peak fp32 TFLOPS is missing.", "缺少参考加速卡的 fp32 峰值 TFLOPS。"),
], ids=["vendor", "reference"])
def test_peak_missing_names_side(tmp_path, reference, peaks, reference_peaks, english, chinese):
    vendor = make_bundle(tmp_path)

    result = judge(vendor, [Reference(reference, reference_peaks)], PACK, peaks).criterion("infer.qps")

    assert result.details["code"] == "peak_missing"
    assert result.explanation["en"] == english
    assert result.explanation["zh"] == chinese
