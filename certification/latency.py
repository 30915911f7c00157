"""Statistics of one load-generation trial, recomputed from its per-request records.

The agent's rate search and the verdict engine both call `summarize_trial`,
so a trial passes or fails by the same rule on both sides. A request record
(one line of requests.jsonl) holds times in seconds on the client's monotonic
clock, relative to the trial's start: `scheduled`, `sent` (just before the
request is written to its connection), `first_token` (the first streamed chunk that carries
generated text) and `end`, with a `status` of "ok" or the failure's kind.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from certification.records import RecordsInvalid, number_field

OK = "ok"


@dataclass(frozen=True)
class TrialSummary:
    """The measured (non-warm-up) requests of one trial, reduced to the figures the search and the verdict use."""

    requests: int
    completed: int
    failed: int
    misses: int
    allowed_misses: int
    ttft_percentile: float
    qps: float
    wall_seconds: float
    passed: bool
    statuses: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ttft_percentile"] = _finite_or_name(self.ttft_percentile)
        data["qps"] = _finite_or_name(self.qps)
        return data


def allowed_misses(count: int, percentile: float) -> int:
    """Return how many of `count` values may exceed a limit while the nearest-rank percentile stays within it.

    The nearest-rank percentile is the value at rank ceil(percentile/100 * count)
    of the sorted values, so it stays within the limit exactly when at most
    count - ceil(percentile/100 * count) values exceed the limit.
    """
    rank = math.ceil(round(percentile * count, 9) / 100.0)
    return count - max(rank, 1) if count else 0


def nearest_rank(values: list[float], percentile: float) -> float:
    """Return the nearest-rank percentile of `values` (math.inf stands for a failed request)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(round(percentile * len(ordered), 9) / 100.0), 1)
    return ordered[rank - 1]


def time_to_first_token(record: dict) -> float:
    """Return first_token - sent in seconds, or math.inf for a request that failed or never produced text."""
    if record.get("status") != OK or record.get("first_token") is None or record.get("sent") is None:
        return math.inf
    return _seconds(record, "first_token") - _seconds(record, "sent")


def _seconds(record: dict, key: str) -> float:
    """Return a time of a requests.jsonl record, or raise RecordsInvalid naming the request, the key and the value."""
    where = f"request {record.get('index')} of trial {record.get('trial')} in requests.jsonl"
    where_zh = f"requests.jsonl 中试验 {record.get('trial')} 的请求 {record.get('index')} "
    seconds = number_field(record, key, where, where_zh)
    if not math.isfinite(seconds):
        raise RecordsInvalid(f"{where} has {key} {record.get(key)!r}, not a finite time", f"{where_zh}的 {key} 是 {record.get(key)!r}，不是有限的时间")
    return seconds


def summarize_trial(records: Iterable[dict], ttft_limit: float, percentile: float, failed_max: int = 0) -> TrialSummary:
    """Reduce the measured requests of one trial to its percentile TTFT, QPS and verdict.

    A request that failed, timed out, was aborted or never sent counts as
    missing the TTFT limit and stays in the statistics. QPS divides the
    completed requests by the wall time from the first measured send to the
    last measured end. The trial passes when the nearest-rank percentile TTFT
    is at most `ttft_limit` and at most `failed_max` requests failed.
    """
    measured = [record for record in records if not record.get("warmup")]
    ttfts = [time_to_first_token(record) for record in measured]
    statuses = Counter(str(record.get("status")) for record in measured)
    completed = statuses.get(OK, 0)
    failed = len(measured) - completed
    misses = sum(1 for value in ttfts if value > ttft_limit)
    allowed = allowed_misses(len(measured), percentile)
    wall = _wall_seconds(measured)
    qps = completed / wall if wall > 0 else math.nan
    reason = _failure_reason(len(measured), failed, failed_max, misses, allowed)
    return TrialSummary(
        requests=len(measured), completed=completed, failed=failed, misses=misses, allowed_misses=allowed,
        ttft_percentile=nearest_rank(ttfts, percentile), qps=qps, wall_seconds=wall,
        passed=not reason, statuses=dict(sorted(statuses.items())), reason=reason,
    )


def _wall_seconds(measured: list[dict]) -> float:
    sent = [_seconds(record, "sent") for record in measured if record.get("sent") is not None]
    ends = [_seconds(record, "end") for record in measured if record.get("end") is not None]
    return max(ends) - min(sent) if sent and ends else 0.0


def _failure_reason(requests: int, failed: int, failed_max: int, misses: int, allowed: int) -> str:
    if requests == 0:
        return "no measured requests"
    if failed > failed_max:
        return f"{failed} of {requests} requests failed, at most {failed_max} allowed"
    if misses > allowed:
        return f"{misses} of {requests} requests missed the TTFT limit, at most {allowed} allowed"
    return ""


def _finite_or_name(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
