"""Verdict rules beyond single bounds: run length, refusals, peaks, several bundles, carried passes, statistics."""

import json
import math

import pytest

from certification.bundle import open_bundle, write_bundle
from certification.criteria import CRITERIA, sign_test_p_value
from certification.verdict import Reference, VerdictInputError, judge
from certification.verdict_messages import MESSAGES
from tests.certification.runfolder import PACK, build_run, loss_curve, step_rows, write_jsonl
from tests.certification.test_verdict import KEY, KEYRING, PEAKS, edited_pack, make_bundle, status_and_code

FINETUNING = ("sft-llama", "lora-llama")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("reference"))


def judged(folder, reference, peaks=PEAKS, **options):
    return judge(make_bundle(folder, **options), [Reference(reference, PEAKS)], PACK, peaks)


@pytest.mark.parametrize(
    ("steps", "status", "code"),
    [(200, "pass", "run_length_pass"), (199, "fail", "run_too_short"), (1, "fail", "run_too_short")],
)
def test_run_length_bound(tmp_path, reference, steps, status, code):
    verdict = judged(tmp_path, reference, steps=steps)

    assert status_and_code(verdict, "pretrain-llama.run_length") == (status, code)


def test_infinite_loss_fails(tmp_path, reference):
    run_dir = build_run(tmp_path / "run")
    losses = loss_curve(200)
    losses[40] = math.inf
    write_jsonl(run_dir / "workloads/pretrain-llama/steps.jsonl", step_rows(losses))
    vendor = open_bundle(write_bundle(run_dir, tmp_path / "run.tar", KEY).path, KEYRING)

    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)

    assert status_and_code(verdict, "pretrain.loss_alignment") == ("fail", "loss_non_finite")
    assert "41" in verdict.criterion("pretrain.loss_alignment").explanation["en"]


@pytest.mark.parametrize(
    ("config_extra", "named"),
    [
        ({"protocol": {"load_model": "closed_loop_concurrency"}}, "protocol"),
    ],
)
def test_other_conditions_refused(tmp_path, reference, config_extra, named):
    verdict = judged(tmp_path, reference, config_extra=config_extra)

    result = verdict.criterion("pretrain.lambada")

    assert (result.status, result.details["code"]) == ("refused", "reference_mismatch")
    assert named in result.explanation["en"]
    assert named in result.explanation["zh"]


def test_global_batch_refused_and_failed(tmp_path, reference):
    verdict = judged(tmp_path, reference, fixed_overrides={"global_batch_size": 8})

    assert status_and_code(verdict, "pretrain.throughput") == ("refused", "reference_mismatch")
    assert "global_batch_size" in verdict.criterion("pretrain.throughput").explanation["en"]
    assert status_and_code(verdict, "pretrain-llama.fixed_hyperparameters") == ("fail", "fixed_hyperparameters_fail")


@pytest.mark.parametrize(
    ("stated", "flagged"),
    [({}, []), ({"fp32": 1.0}, []), ({"fp32": 2.0}, ["fp32"]), ({"bf16": 312.0}, ["bf16"])],
)
def test_stated_peak_flagged(tmp_path, reference, stated, flagged):
    verdict = judged(tmp_path, reference, environment={"peak_tflops": stated})

    assert [flag["data_type"] for flag in verdict.flags] == flagged
    assert all(flag["code"] == "peak_tflops_mismatch" for flag in verdict.flags)


def test_registry_peak_wins(tmp_path, reference):
    verdict = judged(tmp_path, reference, environment={"peak_tflops": {"fp32": 4.0}})

    result = verdict.criterion("pretrain.throughput")

    assert result.details["ratio"] == pytest.approx(1.0)
    assert result.details["vendor"]["peak_tflops"] == 1.0
    assert verdict.flags[0]["registered"] == 1.0
    assert verdict.flags[0]["explanation"]["zh"] and verdict.flags[0]["hint"]["en"]


# Several bundles of one card -----------------------------------------------


def test_bundles_combined_reach_level(tmp_path, reference):
    pretraining = make_bundle(tmp_path / "a", workloads=("pretrain-llama",))
    finetuning = make_bundle(tmp_path / "b", workloads=FINETUNING)

    verdict = judge([pretraining, finetuning], [Reference(reference, PEAKS)], PACK, PEAKS)

    assert verdict.tracks["pretraining"]["level"] == 1
    assert verdict.tracks["finetuning"]["level"] == 1
    assert verdict.bundle_ids == [pretraining.bundle_id, finetuning.bundle_id]


def test_newest_bundle_wins(tmp_path, reference):
    passing = make_bundle(tmp_path / "a")
    failing = make_bundle(tmp_path / "b", workloads=("pretrain-llama",), validation_loss=3.5)

    verdict = judge([passing, failing], [Reference(reference, PEAKS)], PACK, PEAKS)

    assert status_and_code(verdict, "pretrain.validation_loss") == ("fail", "validation_loss_fail")
    assert verdict.tracks["finetuning"]["level"] == 1


def test_bundles_of_other_card_rejected(tmp_path, reference):
    first = make_bundle(tmp_path / "a", workloads=("pretrain-llama",))
    second = make_bundle(tmp_path / "b", workloads=FINETUNING, card_model="X200")

    with pytest.raises(VerdictInputError) as raised:
        judge([first, second], [Reference(reference, PEAKS)], PACK, PEAKS)

    assert raised.value.code == "bundles_of_different_cards"


def test_passes_carried_from_earlier_verdict(tmp_path, reference):
    earlier = judge(make_bundle(tmp_path / "a", workloads=("pretrain-llama",)), [Reference(reference, PEAKS)], PACK, PEAKS).to_dict()
    later = make_bundle(tmp_path / "b", workloads=FINETUNING)

    verdict = judge(later, [Reference(reference, PEAKS)], PACK, PEAKS, carried=[earlier])

    carried = verdict.criterion("pretrain.lambada")
    assert carried.status == "pass"
    assert carried.details["carried_from"]["bundle_id"] == earlier["bundle_id"]
    assert verdict.tracks["pretraining"]["level"] == 1


def test_failures_not_carried(tmp_path, reference):
    earlier = judge(make_bundle(tmp_path / "a", workloads=("pretrain-llama",), validation_loss=3.5), [Reference(reference, PEAKS)], PACK, PEAKS).to_dict()
    later = make_bundle(tmp_path / "b", workloads=FINETUNING)

    verdict = judge(later, [Reference(reference, PEAKS)], PACK, PEAKS, carried=[earlier])

    assert status_and_code(verdict, "pretrain.lambada") == ("fail", "workload_missing")
    assert verdict.tracks["pretraining"]["level"] == 0


def test_other_pack_verdict_not_carried(tmp_path, reference):
    earlier = judge(make_bundle(tmp_path / "a", workloads=("pretrain-llama",)), [Reference(reference, PEAKS)], PACK, PEAKS).to_dict()
    earlier["rule_pack"] = {"name": PACK.name, "sha256": "0" * 64}

    verdict = judge(make_bundle(tmp_path / "b", workloads=FINETUNING), [Reference(reference, PEAKS)], PACK, PEAKS, carried=[earlier])

    assert status_and_code(verdict, "pretrain.lambada") == ("fail", "workload_missing")


def test_other_card_verdict_rejected(tmp_path, reference):
    earlier = judge(make_bundle(tmp_path / "a", workloads=("pretrain-llama",), card_model="X200"), [Reference(reference, PEAKS)], PACK, PEAKS).to_dict()

    with pytest.raises(VerdictInputError) as raised:
        judge(make_bundle(tmp_path / "b", workloads=FINETUNING), [Reference(reference, PEAKS)], PACK, PEAKS, carried=[earlier])

    assert raised.value.code == "carried_verdict_other_card"


def test_gap_names_missing_workload_and_data_type(tmp_path, reference):
    pack = edited_pack(lambda data: data["workloads"]["pretrain-llama"].update(data_type="fp32"))
    vendor = make_bundle(tmp_path / "v", pack=pack, workloads=FINETUNING)
    reference_bundle = make_bundle(tmp_path / "r", pack=pack)

    verdict = judge(vendor, [Reference(reference_bundle, PEAKS)], pack, PEAKS)

    gap = verdict.tracks["pretraining"]["gap"]
    assert {(item["workload"], item["data_type"], item["code"]) for item in gap} == {("pretrain-llama", "fp32", "workload_missing")}


# Statistics beside the pass rules ------------------------------------------


def test_lambada_statistics_shown(tmp_path, reference):
    details = judged(tmp_path, reference, lambada_correct=1040).criterion("pretrain.lambada").details

    low, high = details["difference_ci95"]
    assert low <= 40 * 100 / 5153 <= high
    assert (details["measured_only_correct"], details["reference_only_correct"]) == (40, 0)


def test_rouge_interval_shown(tmp_path, reference):
    details = judged(tmp_path, reference).criterion("sft.rouge").details

    assert set(details["difference_ci95"]) == {"rouge1", "rouge2", "rougeL"}
    assert details["difference_ci95"]["rouge1"] == [0.0, 0.0]


@pytest.mark.parametrize(
    ("good", "same", "bad", "status"),
    [
        (40, 110, 50, "pass"),    # GSB exactly -5%, sign test p = 0.17
        (40, 109, 51, "fail"),    # GSB -5.5%, sign test p = 0.15
        (42, 900, 58, "pass"),    # GSB -1.6%, sign test p = 0.067
        (41, 900, 59, "fail"),    # GSB -1.8%, sign test p = 0.044 shows the vendor worse
        (60, 79, 60, "fail"),     # 199 pairs
        (60, 80, 60, "pass"),     # 200 pairs
    ],
)
def test_gsb_bounds(tmp_path_factory, good, same, bad, status):
    from tests.certification.test_verdict import judged_human

    human = {"sft.human": {"good": good, "same": same, "bad": bad, "signed_off_by": "Li Lei"}}

    result = judged_human(tmp_path_factory, True, human).criterion("sft.human")

    assert result.status == status
    assert result.details["p_value"] == pytest.approx(sign_test_p_value(good, bad))


@pytest.mark.parametrize(("good", "bad", "worse"), [(42, 58, False), (41, 59, True)])
def test_sign_test_alpha_boundary(good, bad, worse):
    assert (sign_test_p_value(good, bad) < 0.05) is worse


def test_every_message_has_both_languages():
    for code, (explanation_zh, explanation_en, hint_zh, hint_en) in MESSAGES.items():
        assert explanation_zh and explanation_en and hint_zh and hint_en, code


# Stability after a warm start (criteria_stability.py registers the metric) --


def stability_run(folder, spike):
    """A 400-step run that resumed from checkpoint step 200; `spike` multiplies the loss of step 205."""
    def edit(data):
        data["workloads"]["pretrain-llama"]["criteria"].append({"id": "pretrain.stability", "metric": "warm_start_stability"})
        data["settings"]["stability"] = {
            "window_after_resume": 200, "history_before_resume": 100, "sigma_multiple": 5.0,
            "relative_margin": 0.05, "tail_window": 20, "continuous_days_min": 14,
        }

    pack = edited_pack(edit)
    run_dir = build_run(folder, pack=pack, workloads=("pretrain-llama",), steps=400)
    losses = loss_curve(400)
    losses[204] *= spike
    write_jsonl(run_dir / "workloads/pretrain-llama/steps.jsonl", step_rows(losses))
    events = [
        {"time": "2026-01-01T00:00:00Z", "event": "start"},
        {"time": "2026-01-01T00:01:00Z", "event": "workload_start", "workload": "pretrain-llama"},
        {"time": "2026-01-01T00:30:00Z", "event": "crash", "workload": "pretrain-llama"},
        {"time": "2026-01-01T00:31:00Z", "event": "resume"},
        {"time": "2026-01-01T00:31:00Z", "event": "workload_start", "workload": "pretrain-llama", "resumed_from_step": 200},
        {"time": "2026-01-01T01:00:00Z", "event": "stop"},
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    return pack, run_dir


@pytest.mark.parametrize(("spike", "status"), [(1.0, "pass"), (3.0, "fail")])
def test_loss_spike_after_resume(tmp_path, spike, status):
    if "warm_start_stability" not in CRITERIA:
        pytest.skip("certification/criteria_stability.py has not registered warm_start_stability yet")
    pack, vendor_dir = stability_run(tmp_path / "vendor", spike)
    _, reference_dir = stability_run(tmp_path / "reference", 1.0)
    vendor = open_bundle(write_bundle(vendor_dir, tmp_path / "vendor.tar", KEY).path, KEYRING)
    reference_bundle = open_bundle(write_bundle(reference_dir, tmp_path / "reference.tar", KEY).path, KEYRING)

    verdict = judge(vendor, [Reference(reference_bundle, PEAKS)], pack, PEAKS)

    assert verdict.criterion("pretrain.stability").status == status


def test_stability_metric_without_module_fails(tmp_path):
    if "warm_start_stability" in CRITERIA:
        pytest.skip("the stability criterion is registered")
    pack, run_dir = stability_run(tmp_path / "vendor", 1.0)
    vendor = open_bundle(write_bundle(run_dir, tmp_path / "vendor.tar", KEY).path, KEYRING)

    verdict = judge(vendor, [Reference(vendor, PEAKS)], pack, PEAKS)

    assert status_and_code(verdict, "pretrain.stability") == ("fail", "metric_unknown")


# Step logs read by prefix --------------------------------------------------


def test_nan_after_compared_steps_fails(tmp_path, reference):
    verdict = judged(tmp_path, reference, steps=300, nan_at=280)

    assert status_and_code(verdict, "pretrain.loss_alignment") == ("fail", "loss_non_finite")
    assert verdict.criterion("pretrain.loss_alignment").details["non_finite_steps"] == [280]


def test_unordered_log_judged_alike(tmp_path, reference):
    run_dir = build_run(tmp_path / "run")
    rows = step_rows(loss_curve(200))
    write_jsonl(run_dir / "workloads/pretrain-llama/steps.jsonl", rows[::-1])
    vendor = open_bundle(write_bundle(run_dir, tmp_path / "run.tar", KEY).path, KEYRING)

    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)

    for criterion_id in ("pretrain.loss_alignment", "pretrain.throughput", "pretrain-llama.run_length"):
        assert verdict.criterion(criterion_id).status == "pass", criterion_id


def test_repeated_step_invalid(tmp_path, reference):
    run_dir = build_run(tmp_path / "run")
    rows = step_rows(loss_curve(200))
    write_jsonl(run_dir / "workloads/pretrain-llama/steps.jsonl", [rows[1], *rows])
    vendor = open_bundle(write_bundle(run_dir, tmp_path / "run.tar", KEY).path, KEYRING)

    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)

    assert status_and_code(verdict, "pretrain-llama.run_length") == ("fail", "records_invalid")
