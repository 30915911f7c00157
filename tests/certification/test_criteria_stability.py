"""Warm-start stability: no loss spike after resuming from checkpoint step k, judged from steps and events."""

import json
import math

import pytest

from certification.bundle import open_bundle, write_bundle
from certification.criteria import CriterionContext, RecordsInvalid, WorkloadRecords, evaluate, problem_zh
from certification.criteria_stability import (
    StabilitySettings,
    check_warm_start,
    crash_events,
    judge_stability,
    longest_crash_free_days,
    warm_start_steps,
)
from certification.rulepack import load_rule_pack
from certification.signing import Keyring, generate_key
from tests.certification.runfolder import build_run, step_rows

STANDARD = StabilitySettings(window_after_resume=200, history_before_resume=100, sigma_multiple=5.0,
                             relative_margin=0.05, tail_window=20)
SMALL = StabilitySettings(window_after_resume=20, history_before_resume=10, sigma_multiple=5.0,
                          relative_margin=0.05, tail_window=5)
WORKLOAD = "pretrain-llama"


def decaying(steps: int) -> dict[int, float]:
    return {step: 2.0 + 8.0 * math.exp(-step / 60.0) for step in range(1, steps + 1)}


def events_with_resume(step: int, workload: str = WORKLOAD) -> list[dict]:
    return [
        {"time": "2026-01-01T00:00:00Z", "event": "start"},
        {"time": "2026-01-01T00:00:01Z", "event": "workload_start", "workload": workload},
        {"time": "2026-01-03T00:00:00Z", "event": "heartbeat", "workload": workload, "step": step + 5},
        {"time": "2026-01-03T01:00:00Z", "event": "crash", "detected": "on resume",
         "last_event": {"time": "2026-01-03T00:00:00Z", "event": "heartbeat", "workload": workload}},
        {"time": "2026-01-03T01:00:00Z", "event": "resume"},
        {"time": "2026-01-03T01:00:01Z", "event": "workload_start", "workload": workload, "resumed_from_step": step},
        {"time": "2026-01-05T01:00:00Z", "event": "workload_end", "workload": workload, "status": "completed"},
        {"time": "2026-01-05T01:00:00Z", "event": "stop", "failed": []},
    ]


def test_smooth_curve_passes_standard_rule():
    check = check_warm_start(decaying(600), 300, STANDARD)

    assert check.problems == ()
    assert check.steps_after == 200
    assert check.tail_mean < check.head_mean


def spiked(curve: dict[int, float], step: int, value: float) -> dict[int, float]:
    return {**curve, step: value}


@pytest.mark.parametrize(
    ("losses", "problem", "problem_zh"),
    [
        (spiked(decaying(600), 350, 3.0), "loss above", "损失高于"),  # mu about 2.05 before step 300
        (spiked(decaying(600), 301, math.nan), "not finite", "不是有限值"),
        ({**decaying(300), **{step: 2.6 for step in range(302, 501)}}, "first logged step", "记录的第一步"),
        ({**decaying(300), **{step: 2.0 + 0.0001 * step for step in range(301, 501)}}, "is not below", "不低于"),
        ({step: value for step, value in decaying(600).items() if step != 320}, "missing", "缺少第"),
    ],
    ids=["spike", "nan", "step-k-plus-1-missing", "not-decreasing", "gap"],
)
def test_warm_start_problems(losses, problem, problem_zh):
    check = check_warm_start(losses, 300, STANDARD)

    assert any(problem in english for english, _chinese in check.problems), check.problems
    assert any(problem_zh in chinese for _english, chinese in check.problems), check.problems


def test_threshold_uses_relative_margin_on_flat_history():
    flat = {step: 2.0 for step in range(1, 301)}
    after = {step: 2.09 for step in range(301, 501)}

    check = check_warm_start({**flat, **after}, 300, STANDARD)

    assert check.std_before == 0.0
    assert check.threshold == pytest.approx(2.1)
    assert check.spike_steps == ()


def test_short_run_skips_decrease_check():
    check = check_warm_start(decaying(28), 20, SMALL)

    assert check.problems == ()
    assert check.steps_after == 8
    assert check.head_mean is None


def test_no_crash_passes():
    events = [{"time": "2026-01-01T00:00:00Z", "event": "start"}, {"time": "2026-01-15T12:00:00Z", "event": "stop"}]

    outcome = judge_stability(decaying(40), events, WORKLOAD, SMALL)

    assert (outcome.status, outcome.code) == ("pass", "stability_no_crash")
    assert outcome.details["crash_free_days"] == pytest.approx(14.5)


def test_crash_without_warm_start_fails():
    events = [
        {"time": "2026-01-01T00:00:00Z", "event": "start"},
        {"time": "2026-01-01T00:00:01Z", "event": "workload_start", "workload": WORKLOAD},
        {"time": "2026-01-01T00:10:00Z", "event": "crash", "workload": WORKLOAD, "error": "RuntimeError: device lost"},
        {"time": "2026-01-01T00:20:00Z", "event": "resume"},
        {"time": "2026-01-01T00:20:01Z", "event": "workload_start", "workload": WORKLOAD},
        {"time": "2026-01-01T02:00:00Z", "event": "stop", "failed": []},
    ]

    outcome = judge_stability(decaying(40), events, WORKLOAD, SMALL)

    assert (outcome.status, outcome.code) == ("fail", "stability_crash_without_warm_start")


def test_warm_start_failure_in_both_languages():
    outcome = judge_stability(spiked(decaying(600), 350, 3.0), events_with_resume(300), WORKLOAD, STANDARD)
    explanation, _hint = outcome.messages()

    assert (outcome.status, outcome.code) == ("fail", "stability_warm_start_fail")
    assert "loss above" in explanation["en"]
    assert "损失高于" in explanation["zh"]
    assert "loss above" not in explanation["zh"]


def test_crash_of_other_workload_ignored():
    assert crash_events(events_with_resume(20, workload="sft-llama"), WORKLOAD) == []


def test_crash_free_days_split_by_crash():
    days = longest_crash_free_days(events_with_resume(20))

    assert days == pytest.approx(2.0, abs=1e-6)


def test_crash_free_days_exclude_downtime():
    # The kill came after the heartbeat of day 2; the resume found it a day later.
    events = events_with_resume(20)
    events[3]["time"] = events[4]["time"] = "2026-01-04T00:00:00Z"

    assert longest_crash_free_days(events) == pytest.approx(2.0, abs=1e-6)


def test_crash_free_days_without_last_time():
    events = events_with_resume(20)
    del events[3]["last_event"]["time"]

    assert longest_crash_free_days(events) == pytest.approx(2.0 + 1 / 24, abs=1e-6)


KEY = generate_key()


def stability_outcome(tmp_path, losses: dict[int, float], events: list[dict]):
    pack = load_rule_pack("tiny-2026.1")
    run_dir = build_run(tmp_path / "run", workloads=(WORKLOAD,))
    folder = run_dir / "workloads" / WORKLOAD
    rows = step_rows([losses[step] for step in sorted(losses)])
    (folder / "steps.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (run_dir / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    bundle = open_bundle(write_bundle(run_dir, tmp_path / "run.tar", KEY).path, Keyring([KEY.public_key]))
    records = WorkloadRecords(bundle, WORKLOAD)
    context = CriterionContext(criterion={"id": "pretrain-llama.stability", "metric": "warm_start_stability"},
                               workload_id=WORKLOAD, settings=pack.data["settings"], vendor=records,
                               reference=records, vendor_peaks={}, reference_peaks={}, throughput_bound=None, human=None)
    return evaluate(context)


def test_bundle_warm_start_passes(tmp_path):
    outcome = stability_outcome(tmp_path, decaying(40), events_with_resume(20))

    assert (outcome.status, outcome.code) == ("pass", "stability_warm_start_pass")
    assert outcome.details["warm_starts"][0]["step"] == 20


def test_bundle_spike_after_resume_fails(tmp_path):
    outcome = stability_outcome(tmp_path, spiked(decaying(40), 23, 12.0), events_with_resume(20))

    assert (outcome.status, outcome.code) == ("fail", "stability_warm_start_fail")
    assert outcome.details["warm_starts"][0]["spike_steps"] == [23]
    assert outcome.details["warm_starts"][0]["threshold"] < 12.0


def test_bundle_huge_loss_before_resume_named(tmp_path):
    outcome = stability_outcome(tmp_path, spiked(decaying(40), 15, 1e200), events_with_resume(20))

    assert (outcome.status, outcome.code) == ("fail", "records_invalid")
    assert outcome.fields["problem"] == "step 15 has loss 1e+200, larger in magnitude than 1e+100"
    assert outcome.fields["problem_zh"] == "第 15 步的 loss 是 1e+200，绝对值大于 1e+100"


def test_resume_step_not_integer_in_chinese():
    events = events_with_resume(300)
    events[5]["resumed_from_step"] = "three hundred"

    with pytest.raises(RecordsInvalid) as caught:
        warm_start_steps(events, WORKLOAD)

    assert problem_zh(caught.value) == "events.jsonl 中某个 workload_start 事件的 resumed_from_step 是 'three hundred'，不是整数"
