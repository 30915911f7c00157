"""Pretraining stability: no crash, or a warm start from a checkpoint without a loss spike.

The rule reads its numbers from the rule pack's `settings.stability`. After
a warm start from the checkpoint of step k, the first logged step is k+1. No
loss in steps k+1..k+W is above mu + max(s * sigma, m * mu), where mu and
sigma are the mean and population standard deviation of the H losses of
steps k-H+1..k. The mean of the last T steps of that window is below the mean
of its first T steps. W is `window_after_resume`, H `history_before_resume`,
s `sigma_multiple`, m `relative_margin` and T `tail_window`.

The records are the workload's steps.jsonl and the run's events.jsonl. The
agent writes a `workload_start` event with `resumed_from_step` k for each warm
start, and a `crash` event for a workload that raised or for a process that
was killed (written when the run resumes). A run without a crash passes. A
crash followed by a restart from step 0 fails, because it is not a warm start.
The longest crash-free span, in days from the event times, is reported for
the 14-day rule; whether that rule applies is the staff's decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certification.bundle import VerifiedBundle
from certification.criteria import FAIL, PASS, CriterionContext, Outcome, RecordsInvalid, criterion
from certification.metrics import check_magnitude
from certification.records import integer_field
from certification.verdict_messages import MESSAGES

EVENTS = "events.jsonl"

MESSAGES.update({
    "stability_no_crash": (
        "训练从开始到结束没有崩溃；最长无崩溃时段 {days:.2f} 天。",
        "The training ran from start to end without a crash; the longest crash-free span is {days:.2f} days.",
        "无需操作。", "Nothing to do.",
    ),
    "stability_warm_start_pass": (
        "{count} 次从检查点热启动（步 {steps}）后均无损失尖峰，且损失继续下降。",
        "{count} warm start(s) from checkpoints (step {steps}) show no loss spike, and the loss keeps decreasing.",
        "无需操作。", "Nothing to do.",
    ),
    "stability_warm_start_fail": (
        "从第 {step} 步检查点热启动后不满足稳定性规则：{problem_zh}。",
        "The warm start from the checkpoint of step {step} breaks the stability rule: {problem}.",
        "检查检查点是否完整（模型、优化器、学习率调度和数据位置），并从最近的完整检查点恢复。",
        "Check that the checkpoint is complete (model, optimizer, learning-rate schedule and data position) and resume from the latest complete one.",
    ),
    "stability_crash_without_warm_start": (
        "训练崩溃了 {count} 次，但没有从检查点热启动。",
        "The training crashed {count} time(s) but did not warm-start from a checkpoint.",
        "用 `python -m agent run --resume` 从最近的检查点继续训练。",
        "Continue the training from its latest checkpoint with `python -m agent run --resume`.",
    ),
})


@dataclass(frozen=True)
class StabilitySettings:
    window_after_resume: int
    history_before_resume: int
    sigma_multiple: float
    relative_margin: float
    tail_window: int

    @classmethod
    def from_pack(cls, settings: dict[str, Any]) -> "StabilitySettings":
        stability = settings["stability"]
        return cls(int(stability["window_after_resume"]), int(stability["history_before_resume"]),
                   float(stability["sigma_multiple"]), float(stability["relative_margin"]), int(stability["tail_window"]))


@dataclass(frozen=True)
class WarmStart:
    """The stability rule applied to one warm start from the checkpoint of `step`; `problems` is empty when it holds.

    Each problem is an (English, Chinese) pair of texts.
    """

    step: int
    problems: tuple[tuple[str, str], ...]
    mean_before: float | None = None
    std_before: float | None = None
    threshold: float | None = None
    spike_steps: tuple[int, ...] = ()
    head_mean: float | None = None
    tail_mean: float | None = None
    steps_after: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "problems": [english for english, _chinese in self.problems], "mean_before": self.mean_before,
                "std_before": self.std_before, "threshold": self.threshold, "spike_steps": list(self.spike_steps),
                "head_mean": self.head_mean, "tail_mean": self.tail_mean, "steps_after": self.steps_after}


def check_warm_start(losses: dict[int, float], step: int, settings: StabilitySettings) -> WarmStart:
    """Apply the stability rule to the warm start from the checkpoint of `step`.

    Fewer than `history_before_resume` losses before the checkpoint (a crash
    early in the run) use the losses there are, at least two. A run that ends
    before k+W is judged over the steps it has; the decrease is judged only
    when those steps hold two tail windows.
    """
    history = [losses.get(number, math.nan) for number in range(max(1, step - settings.history_before_resume + 1), step + 1)]
    after_steps = [number for number in range(step + 1, step + settings.window_after_resume + 1) if number in losses]
    if step + 1 not in losses:
        return WarmStart(step, ((f"the first logged step after the warm start is not {step + 1}",
                                 f"热启动后记录的第一步不是第 {step + 1} 步"),))
    if len(history) < 2 or not all(math.isfinite(value) for value in history):
        return WarmStart(step, ((f"fewer than 2 finite losses before step {step}", f"第 {step} 步之前有限的损失值少于 2 个"),))
    gaps = [number for number in range(step + 1, after_steps[-1] + 1) if number not in losses]
    if gaps:
        return WarmStart(step, ((f"steps {gaps[:5]} are missing after the warm start", f"热启动后缺少第 {gaps[:5]} 步"),))

    for number in (*range(step - len(history) + 1, step + 1), *after_steps):
        # Bounded losses keep the squares below from overflowing, which raises OverflowError for floats.
        check_magnitude(losses[number], number, "loss")
    mean_before = sum(history) / len(history)
    std_before = math.sqrt(sum((value - mean_before) ** 2 for value in history) / len(history))
    threshold = mean_before + max(settings.sigma_multiple * std_before, settings.relative_margin * mean_before)
    after = [losses[number] for number in after_steps]
    spikes = tuple(number for number, value in zip(after_steps, after) if not value <= threshold)
    problems = []
    if spikes:
        problems.append((f"loss above {threshold:.4g} (or not finite) at steps {list(spikes[:5])}",
                         f"第 {list(spikes[:5])} 步的损失高于 {threshold:.4g}（或不是有限值）"))

    head_mean = tail_mean = None
    tail = settings.tail_window
    if len(after) >= 2 * tail:
        head_mean, tail_mean = sum(after[:tail]) / tail, sum(after[-tail:]) / tail
        if not tail_mean < head_mean:
            problems.append((f"the mean of the last {tail} steps ({tail_mean:.4g}) is not below that of the first {tail} ({head_mean:.4g})",
                             f"最后 {tail} 步的平均损失（{tail_mean:.4g}）不低于最初 {tail} 步的平均损失（{head_mean:.4g}）"))
    return WarmStart(step, tuple(problems), mean_before, std_before, threshold, spikes, head_mean, tail_mean, len(after))


def warm_start_steps(events: list[dict], workload_id: str) -> list[int]:
    """Return the checkpoint step of each warm start of the workload, in event order."""
    return [integer_field(event, "resumed_from_step", "a workload_start event in events.jsonl", "events.jsonl 中某个 workload_start 事件") for event in events
            if event.get("event") == "workload_start" and event.get("workload") == workload_id
            and event.get("resumed_from_step") is not None]


def crash_events(events: list[dict], workload_id: str) -> list[dict]:
    """Return the crash events of the workload, including kills detected on resume while it ran."""
    crashes = []
    for event in events:
        if event.get("event") != "crash":
            continue
        last = event.get("last_event") or {}
        if event.get("workload") == workload_id or last.get("workload") == workload_id:
            crashes.append(event)
    return crashes


def longest_crash_free_days(events: list[dict]) -> float:
    """Return the longest span from a start or resume to the next crash or stop (or the last event), in days.

    A kill found on resume is written as a crash at resume time. Its span
    ends at the time of the last event before the kill (`last_event`),
    because the run was down from then until the resume.
    """
    longest, began = 0.0, None
    for event in events:
        moment = _parse_time(event.get("time"))
        if event.get("event") in ("start", "resume"):
            began = moment if began is None else began
        elif event.get("event") in ("crash", "stop") and began is not None:
            longest = max(longest, (_span_end(event, moment) - began).total_seconds())
            began = None
    if began is not None and events:
        longest = max(longest, (_parse_time(events[-1].get("time")) - began).total_seconds())
    return longest / 86400.0


def _span_end(event: dict, moment: datetime) -> datetime:
    """Return when the run was last seen alive before `event`: the time of its `last_event` if it has one, else `moment`."""
    last = event.get("last_event")
    if isinstance(last, dict) and "time" in last:
        return min(_parse_time(last["time"]), moment)
    return moment


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise RecordsInvalid(f"{EVENTS} has an event without a time", f"{EVENTS} 中有事件没有时间")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RecordsInvalid(f"{EVENTS} has an invalid time {text!r}", f"{EVENTS} 中的时间 {text!r} 无效") from None


def judge_stability(losses: dict[int, float], events: list[dict], workload_id: str,
                    settings: StabilitySettings) -> Outcome:
    """Judge one workload's stability from its per-step losses and the run's events."""
    days = longest_crash_free_days(events)
    starts = warm_start_steps(events, workload_id)
    crashes = crash_events(events, workload_id)
    if not starts:
        if crashes:
            return Outcome(FAIL, "stability_crash_without_warm_start", measured={"crashes": len(crashes)},
                           fields={"count": len(crashes)}, details={"crash_free_days": days})
        return Outcome(PASS, "stability_no_crash", measured={"crashes": 0, "crash_free_days": days},
                       fields={"days": days}, details={"crash_free_days": days})

    checks = [check_warm_start(losses, step, settings) for step in starts]
    details = {"warm_starts": [check.to_dict() for check in checks], "crashes": len(crashes), "crash_free_days": days}
    bound = {"window_after_resume": settings.window_after_resume, "history_before_resume": settings.history_before_resume,
             "sigma_multiple": settings.sigma_multiple, "relative_margin": settings.relative_margin,
             "tail_window": settings.tail_window}
    failed = [check for check in checks if check.problems]
    if failed:
        first = failed[0]
        return Outcome(FAIL, "stability_warm_start_fail", measured={"warm_starts": len(checks), "failed": len(failed)},
                       bound=bound, fields={"step": first.step, "problem": "; ".join(english for english, _chinese in first.problems),
                                                "problem_zh": "；".join(chinese for _english, chinese in first.problems)},
                       details=details)
    return Outcome(PASS, "stability_warm_start_pass", measured={"warm_starts": len(checks), "failed": 0}, bound=bound,
                   fields={"count": len(checks), "steps": ", ".join(str(step) for step in starts)}, details=details)


def run_events(bundle: VerifiedBundle) -> list[dict]:
    if not bundle.has(EVENTS):
        raise RecordsInvalid(f"{EVENTS} is missing", f"缺少 {EVENTS}")
    return list(bundle.iter_jsonl(EVENTS))


@criterion("warm_start_stability")
def warm_start_stability(context: CriterionContext) -> Outcome:
    """Judge the vendor's run alone: stability has no reference figure to compare with."""
    settings = StabilitySettings.from_pack(context.settings)
    return judge_stability(context.vendor.losses, run_events(context.vendor.bundle), context.workload_id, settings)
