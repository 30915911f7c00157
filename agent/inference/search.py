"""The QPS search: the highest load whose percentile time to first token stays within the limit, confirmed twice.

The level is the Poisson arrival rate (requests/s) or, for the closed-loop
model, the number of concurrent clients. The search grows the level by
`growth_factor` until a trial fails, bisects between the last pass and the
first fail `refine_steps` times, then runs `confirmations` more trials at the
best level. If a confirmation fails, the level steps down and is searched and
confirmed again. A level counts only when every trial at it passed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certification.latency import TrialSummary, summarize_trial
from certification.records import append_jsonl, write_json

from agent.i18n import N_, _
from agent.inference.loadgen import ABORTED_ERROR, NOT_SENT_ERROR, Endpoint, TrialPlan, TrialState, run_sync, run_trial

logger = logging.getLogger(__name__)

# The steps of the QPS search, as TrialPlan.role records them, with the words that the log uses for them.
TRIAL_ROLES = {"search": N_("search"), "refine": N_("refine"), "confirm": N_("confirm")}

LOAD_MODELS = ("poisson", "concurrency")
# Rule pack names of settings.inference keys and load models, and the keys the search does not read.
PACK_NAMES = {"time_to_first_token_percentile": "percentile", "time_to_first_token_max_seconds": "ttft_limit_seconds"}
LOAD_MODEL_NAMES = {"open_loop_poisson": "poisson", "closed_loop_concurrency": "concurrency",
                    "poisson": "poisson", "concurrency": "concurrency"}
# Statuses that a working but overloaded server produces; a trial with any of them is not a sign of a broken endpoint.
OVERLOAD_STATUSES = {"ok", "timeout", "aborted"}
IGNORED_PACK_KEYS = {"note", "load_model_options", "peak_data_type", "input_tokens"}


class SearchError(Exception):
    """The search cannot go on, such as an endpoint that is down or rejects every request.

    The message and hint are English, as search.json records them; `localized()` returns them in the user's language.
    """

    def __init__(self, code: str, template: str, hint: str, **values: Any):
        super().__init__(template.format(**values))
        self.code = code
        self.template = template
        self.hint = hint
        self.values = values

    def localized(self) -> tuple[str, str]:
        """Return the message and the hint in the user's language."""
        return _(self.template).format(**self.values), _(self.hint)


@dataclass(frozen=True)
class SearchSettings:
    """The rule pack's `settings.inference` values that drive the search (units in the names)."""

    load_model: str = "poisson"
    percentile: float = 99.0
    ttft_limit_seconds: float = 1.0
    min_duration_seconds: float = 10.0
    warmup_seconds: float = 2.0
    output_tokens: int = 16
    start_level: float = 8.0
    growth_factor: float = 2.0
    max_level: float = 4096.0
    min_level: float = 0.5
    refine_steps: int = 2
    confirmations: int = 2
    confirm_attempts: int = 3
    request_timeout_seconds: float = 30.0
    failed_requests_max: int = 0
    seed: int = 1234

    @classmethod
    def from_pack(cls, settings: dict[str, Any]) -> SearchSettings:
        """Build the settings from a rule pack's `settings.inference`, whose names follow the standard's wording."""
        values = {PACK_NAMES.get(key, key): value for key, value in settings.items() if key not in IGNORED_PACK_KEYS}
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown settings.inference keys {unknown}")
        values["load_model"] = LOAD_MODEL_NAMES.get(values.get("load_model", "poisson"), values.get("load_model"))
        result = cls(**values)
        if result.load_model not in LOAD_MODELS:
            raise ValueError(f"load_model {settings.get('load_model')!r} is not known: use one of {', '.join(LOAD_MODEL_NAMES)}")
        if not 0 < result.percentile <= 100 or result.growth_factor <= 1 or result.start_level <= 0:
            raise ValueError("the percentile must be in (0, 100], growth_factor above 1 and start_level positive")
        return result


@dataclass
class Trial:
    """A finished trial: its plan, its recomputed summary and why it stopped early, if it did."""

    plan: TrialPlan
    summary: TrialSummary
    stop_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "summary": self.summary.to_dict(), "stop_reason": self.stop_reason}


@dataclass
class SearchRun:
    """State of one search: where records go and the trials so far."""

    endpoint: Endpoint
    model: str
    prompts: list[str]
    settings: SearchSettings
    out_dir: Path
    trials: list[Trial] = field(default_factory=list)

    @property
    def requests_path(self) -> Path:
        return self.out_dir / "requests.jsonl"

    async def attempt(self, level: float, role: str) -> bool:
        """Run one trial at `level`, append its records, and return whether it passed."""
        plan = self._plan(level, role)
        state = await run_trial(self.endpoint, self.prompts, self.model, plan)
        append_jsonl(self.requests_path, (record.to_dict() for record in state.records))
        summary = summarize_trial([record.to_dict() for record in state.records], self.settings.ttft_limit_seconds,
                                  self.settings.percentile, self.settings.failed_requests_max)
        self.trials.append(Trial(plan, summary, state.stop_reason))
        _log_trial(plan, summary, state)
        _raise_if_unreachable(self.endpoint, state, summary)
        return summary.passed

    def _plan(self, level: float, role: str) -> TrialPlan:
        settings = self.settings
        return TrialPlan(
            trial=len(self.trials), load_model=settings.load_model, level=level,
            warmup_seconds=settings.warmup_seconds, duration_seconds=settings.min_duration_seconds,
            max_tokens=settings.output_tokens, ttft_limit=settings.ttft_limit_seconds,
            percentile=settings.percentile, request_timeout=settings.request_timeout_seconds,
            seed=settings.seed + len(self.trials), role=role,
        )


def _log_trial(plan: TrialPlan, summary: TrialSummary, state: TrialState) -> None:
    level = (_("{level:g} req/s") if plan.load_model == "poisson" else _("{level:g} clients")).format(level=plan.level)
    line = _("trial {trial} ({role}) at {level}: {outcome}, p{percentile:g} TTFT {ttft:.3f} s, QPS {qps:.2f}, {requests} requests, "
             "statuses {statuses}").format(
        trial=plan.trial, role=_(TRIAL_ROLES.get(plan.role, plan.role)), level=level, outcome=_("pass") if summary.passed else _("fail"),
        percentile=plan.percentile, ttft=summary.ttft_percentile, qps=summary.qps, requests=summary.requests, statuses=summary.statuses)
    if state.stop_reason:
        line += _(" (stopped early: {misses} measured requests missed the TTFT limit, more than the {allowed} allowed)").format(
            misses=state.stop_misses, allowed=state.stop_allowed)
    logger.info(line)
    if summary.failed:
        example = next(record for record in state.records if not record.warmup and record.status != "ok")
        error = _(example.error) if example.error in (NOT_SENT_ERROR, ABORTED_ERROR) else example.error
        logger.warning(_("trial {trial}: {failed} requests failed, for example request {index}: {status} {error}").format(
            trial=plan.trial, failed=summary.failed, index=example.index, status=example.status, error=error))


def _raise_if_unreachable(endpoint: Endpoint, state: TrialState, summary: TrialSummary) -> None:
    """Stop the search when every request of a trial failed for a reason other than load, naming the most common one."""
    issued = [record for record in state.records if record.sent is not None]
    if not issued or any(record.status in OVERLOAD_STATUSES for record in issued):
        return
    counts: dict[str, int] = {}
    for record in issued:
        counts[record.status] = counts.get(record.status, 0) + 1
    status = max(counts, key=counts.get)
    example = next(record for record in issued if record.status == status)
    if status == "connect_error":
        raise SearchError("endpoint_unreachable", N_("could not connect to {url}: {error}"),
                          N_("start the server, or pass the URL of its completions endpoint with --endpoint"),
                          url=endpoint.url, error=example.error)
    raise SearchError(f"endpoint_{status}", N_("every request to {url} failed ({status}), for example: {error}"),
                      N_("check that the URL is the server's OpenAI-compatible /v1/completions and that it streams server-sent events"),
                      url=endpoint.url, status=status, error=example.error)


async def search(run: SearchRun) -> float | None:
    """Return the highest confirmed level, or None when no level down to min_level passes."""
    settings = run.settings
    low, high = await _bracket(run)
    if low is None:
        return None
    for _ in range(settings.refine_steps):
        middle = _between(low, high, settings.load_model)
        if middle is None:
            break
        if await run.attempt(middle, "refine"):
            low = middle
        else:
            high = middle
    return await _confirm(run, low)


async def _bracket(run: SearchRun) -> tuple[float | None, float | None]:
    """Grow the level until a trial fails (or shrink it until one passes); return (last pass, first fail)."""
    settings = run.settings
    level, low, high = settings.start_level, None, None
    while level <= settings.max_level:
        if not await run.attempt(level, "search"):
            high = level
            break
        low = level
        level = _step(level, settings.growth_factor, settings.load_model)
    while low is None:
        level = _step(level if high is None else high, 1.0 / settings.growth_factor, settings.load_model)
        if level < settings.min_level or level == high:
            return None, high
        if await run.attempt(level, "search"):
            low = level
        else:
            high = level
    return low, high


async def _confirm(run: SearchRun, level: float) -> float | None:
    """Confirm `level`, stepping down after a failure to a level where no trial has failed yet."""
    settings = run.settings
    for attempt in range(settings.confirm_attempts):
        if attempt > 0 and not await run.attempt(level, "search"):
            level = _lower_untried(run, level)
            continue
        confirmed = True
        for _ in range(settings.confirmations):
            if not await run.attempt(level, "confirm"):
                confirmed = False
                break
        if confirmed:
            return level
        level = _lower_untried(run, level)
        if level < settings.min_level:
            break
    return None


def _lower_untried(run: SearchRun, level: float) -> float:
    """Step below `level` past every level with a failed trial, because such a level can never count."""
    failed = {trial.plan.level for trial in run.trials if not trial.summary.passed}
    factor = 1.0 / run.settings.growth_factor ** 0.5
    level = _step(level, factor, run.settings.load_model)
    while level in failed and level >= run.settings.min_level:
        level = _step(level, factor, run.settings.load_model)
    return level


def _step(level: float, factor: float, load_model: str) -> float:
    if load_model == "concurrency":
        stepped = int(round(level * factor))
        if stepped == level:
            stepped = level + (1 if factor > 1 else -1)
        return float(max(stepped, 0))
    return round(level * factor, 3)


def _between(low: float, high: float | None, load_model: str) -> float | None:
    if high is None:
        return None
    if load_model == "concurrency":
        middle = float((int(low) + int(high)) // 2)
        return middle if low < middle < high else None
    return round(math.sqrt(low * high), 3)


def run_search(endpoint: Endpoint, model: str, prompts: list[str], settings: SearchSettings, out_dir: Path) -> dict[str, Any]:
    """Run the whole search, write requests.jsonl and search.json to `out_dir`, and return the search record.

    search.json is written when the search stops with an error too, with the
    error's code and message, so the run record always names what went wrong.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    run = SearchRun(endpoint, model, prompts, settings, out_dir)
    record: dict[str, Any] = {"endpoint": endpoint.url, "model": model, "settings": settings.__dict__,
                              "prompts": len(prompts), "clock": "time.perf_counter (CLOCK_MONOTONIC), seconds"}
    try:
        level = run_sync(search(run))
    except SearchError as error:
        record.update(status="failed", error={"code": error.code, "message": str(error), "hint": error.hint},
                      trials=[trial.to_dict() for trial in run.trials])
        write_json(out_dir / "search.json", record)
        raise
    record.update(status="completed", trials=[trial.to_dict() for trial in run.trials], result=_result(run, level))
    write_json(out_dir / "search.json", record)
    return record


def _result(run: SearchRun, level: float | None) -> dict[str, Any]:
    if level is None:
        return {"level": None, "qps": None, "reason": "no load level met the TTFT limit"}
    at_level = [trial for trial in run.trials if trial.plan.level == level]
    qps = min(trial.summary.qps for trial in at_level)
    worst = max(trial.summary.ttft_percentile for trial in at_level)
    return {"level": level, "qps": qps, "trials": [trial.plan.trial for trial in at_level], "worst_ttft_percentile": worst}
