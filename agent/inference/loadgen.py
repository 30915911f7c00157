"""Load generator for OpenAI-compatible streaming completions servers.

One asyncio event loop issues every request over its own HTTP/1.1
connection (plain or TLS), reads the server-sent events as they arrive and
records per request: scheduled time, send time (taken just before the
connection is opened), time of the first chunk that carries generated text,
end time, status and token counts. Chunks without text (role-only, empty,
keep-alive comments) do not end the time to first token. Failed, timed-out
and aborted requests are recorded with their status and never dropped.

Clock: `time.perf_counter`, which is CLOCK_MONOTONIC on Linux and therefore
comparable with another process's `perf_counter` on the same machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import logging
import math
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from certification.latency import OK, allowed_misses

logger = logging.getLogger(__name__)

clock = time.perf_counter

MAX_ERROR_TEXT = 300
MAX_HEADER_BYTES = 64 * 1024
SPIN_SECONDS = 0.0015


class EndpointError(ValueError):
    """An endpoint URL that cannot be used: not http(s), or without a host."""


@dataclass(frozen=True)
class Endpoint:
    """The completions URL, split into host, port, path and whether it uses TLS."""

    url: str
    host: str
    port: int
    path: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EndpointError(f"endpoint {url!r} is not an http:// or https:// URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/v1/completions"
        if parts.query:
            path += "?" + parts.query
        return cls(url, parts.hostname, port, path, parts.scheme == "https")


@dataclass(frozen=True)
class RequestSpec:
    """The content of one request: the prompt, the fixed output length and the model name."""

    prompt: str
    max_tokens: int
    model: str

    def body(self) -> bytes:
        return json.dumps({
            "model": self.model, "prompt": self.prompt, "max_tokens": self.max_tokens,
            "temperature": 0, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True},
        }, ensure_ascii=False).encode("utf-8")


@dataclass
class RequestRecord:
    """One request of a trial; times are seconds since the trial's start on the client clock."""

    trial: int
    index: int
    scheduled: float
    warmup: bool
    sent: float | None = None
    first_token: float | None = None
    end: float | None = None
    status: str = "not_sent"
    error: str = ""
    http_status: int | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    text_chunks: int = 0
    requested_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {key: _rounded(value) for key, value in self.__dict__.items()}

    @property
    def ttft(self) -> float:
        if self.status != OK or self.first_token is None or self.sent is None:
            return math.inf
        return self.first_token - self.sent


def _rounded(value: Any) -> Any:
    return round(value, 7) if isinstance(value, float) else value


class StreamFailure(Exception):
    """A request that ended badly; `status` names the kind (http_error, malformed, server_error, incomplete)."""

    def __init__(self, status: str, message: str, http_status: int | None = None):
        super().__init__(message)
        self.status = status
        self.http_status = http_status


def run_sync(coroutine):
    """Run `coroutine` to completion on a new event loop, in a worker thread if this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# One streaming request ------------------------------------------------------


async def stream_completion(endpoint: Endpoint, spec: RequestSpec, record: RequestRecord, origin: float,
                            timeout: float) -> None:
    """Send one streaming request and fill `record`.

    Server and connection failures, timeouts included, are recorded in
    `record.status` and not raised. Cancellation is recorded and re-raised.
    """
    record.requested_tokens = spec.max_tokens
    record.status = "in_flight"
    record.sent = clock() - origin
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=ssl.create_default_context() if endpoint.tls else None)
            writer.write(_request_bytes(endpoint, spec))
            await writer.drain()
            await _read_response(reader, record, origin)
        record.status = OK
    except TimeoutError:
        record.status, record.error = "timeout", f"no complete response within {timeout:g} s"
    except (ConnectionRefusedError, ConnectionResetError, OSError) as error:
        kind = "connect_error" if record.first_token is None and record.http_status is None else "connection_lost"
        record.status, record.error = kind, f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT]
    except asyncio.IncompleteReadError as error:
        record.status, record.error = "incomplete", f"the connection closed in the middle of a chunk ({len(error.partial)} bytes read)"
    except (ValueError, UnicodeError) as error:
        record.status, record.error = "malformed", f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT]
    except StreamFailure as failure:
        record.status, record.error = failure.status, str(failure)[:MAX_ERROR_TEXT]
        record.http_status = failure.http_status or record.http_status
    except asyncio.CancelledError:
        record.status, record.error = "aborted", "the trial stopped before this request finished"
        raise
    finally:
        record.end = clock() - origin
        if writer is not None:
            writer.close()


def _request_bytes(endpoint: Endpoint, spec: RequestSpec) -> bytes:
    body = spec.body()
    host = endpoint.host if ":" not in endpoint.host else f"[{endpoint.host}]"
    head = (
        f"POST {endpoint.path} HTTP/1.1\r\nHost: {host}:{endpoint.port}\r\n"
        "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _read_response(reader: asyncio.StreamReader, record: RequestRecord, origin: float) -> None:
    status, headers = await _read_head(reader)
    record.http_status = status
    if status != 200:
        body = await _read_some(reader)
        raise StreamFailure("http_error", f"HTTP {status}: {body}", status)
    content_type = headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        body = await _read_some(reader)
        raise StreamFailure("malformed", f"expected Content-Type text/event-stream, got {content_type!r}: {body}")

    parser = EventParser()
    async for piece in _body_pieces(reader, headers):
        for data in parser.feed(piece):
            if _handle_event(data, record, origin):
                return
    raise StreamFailure("incomplete", "the stream ended before data: [DONE]")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        raise StreamFailure("malformed", f"the server closed the connection before a full HTTP header: {error.partial[:80]!r}")
    except asyncio.LimitOverrunError:
        raise StreamFailure("malformed", f"the HTTP header is larger than {MAX_HEADER_BYTES} bytes")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise StreamFailure("malformed", f"invalid HTTP status line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_some(reader: asyncio.StreamReader) -> str:
    try:
        data = await asyncio.wait_for(reader.read(2048), 1.0)
    except (TimeoutError, OSError):
        data = b""
    return data.decode("utf-8", "replace").strip()[:MAX_ERROR_TEXT]


async def _body_pieces(reader: asyncio.StreamReader, headers: dict[str, str]):
    """Yield the body's bytes as they arrive: chunked transfer coding, Content-Length or read to close."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise StreamFailure("malformed", f"invalid chunk size line {size_line[:40]!r}")
            if size == 0:
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while piece := await reader.read(65536):
            yield piece


class EventParser:
    """Split a server-sent event stream into the data of each event; comment lines (keep-alive) are skipped."""

    def __init__(self):
        self.buffer = b""
        self.data: list[str] = []

    def feed(self, piece: bytes) -> list[str]:
        self.buffer += piece
        events = []
        while b"\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n", 1)
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if self.data:
                    events.append("\n".join(self.data))
                    self.data = []
            elif line.startswith("data:"):
                self.data.append(line[5:].lstrip(" "))
        return events


def _handle_event(data: str, record: RequestRecord, origin: float) -> bool:
    """Apply one event to the record. Return True at data: [DONE]."""
    if data.strip() == "[DONE]":
        return True
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        raise StreamFailure("malformed", f"a streamed event is not JSON: {data[:120]!r}")
    if not isinstance(event, dict):
        raise StreamFailure("malformed", f"a streamed event is not a JSON object: {data[:120]!r}")
    if "error" in event:
        raise StreamFailure("server_error", f"the server streamed an error: {json.dumps(event['error'])[:200]}")
    text = _choice_text(event)
    if text:
        if record.first_token is None:
            record.first_token = clock() - origin
        record.text_chunks += 1
    usage = event.get("usage")
    if isinstance(usage, dict):
        record.prompt_tokens = usage.get("prompt_tokens", record.prompt_tokens)
        record.output_tokens = usage.get("completion_tokens", record.output_tokens)
    return False


def _choice_text(event: dict) -> str:
    choices = event.get("choices")
    if choices is None:
        return ""
    if not isinstance(choices, list):
        raise StreamFailure("malformed", f"'choices' is not a list in {json.dumps(event)[:120]}")
    texts = []
    for choice in choices:
        if not isinstance(choice, dict):
            raise StreamFailure("malformed", f"a choice is not an object in {json.dumps(event)[:120]}")
        text = choice.get("text")
        if text is None and isinstance(choice.get("delta"), dict):
            text = choice["delta"].get("content")
        texts.append(text or "")
    return "".join(texts)


# Trials ---------------------------------------------------------------------


@dataclass(frozen=True)
class TrialPlan:
    """One trial: the load model and its level (arrival rate in requests/s, or concurrency), with its timing."""

    trial: int
    load_model: str
    level: float
    warmup_seconds: float
    duration_seconds: float
    max_tokens: int
    ttft_limit: float
    percentile: float
    request_timeout: float
    seed: int
    role: str = "search"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def poisson_arrivals(rate: float, seconds: float, seed: int) -> list[float]:
    """Return arrival offsets of a Poisson process of `rate` per second over [0, seconds), sorted.

    The count is fixed at round(rate * seconds) and the times are uniform on
    the interval: this is a Poisson process conditioned on its count, so the
    achieved rate equals the target instead of scattering around it.
    """
    generator = random.Random(seed)
    count = max(1, round(rate * seconds))
    return sorted(generator.uniform(0.0, seconds) for _ in range(count))


@dataclass
class TrialState:
    """Shared state of a running trial: its records and whether the outcome is already certain."""

    plan: TrialPlan
    records: list[RequestRecord] = field(default_factory=list)
    stopped: bool = False
    stop_reason: str = ""


async def run_trial(endpoint: Endpoint, prompts: list[str], model: str, plan: TrialPlan) -> TrialState:
    """Run one trial under its load model and return every request record, issued or not."""
    state = TrialState(plan)
    origin = clock() + 0.05
    if plan.load_model == "poisson":
        issue = _issue_poisson(endpoint, prompts, model, plan, state, origin)
    elif plan.load_model == "concurrency":
        issue = _issue_closed_loop(endpoint, prompts, model, plan, state, origin)
    else:
        raise ValueError(f"load model {plan.load_model!r} is not known: use poisson or concurrency")
    watcher = asyncio.create_task(_watch(state, origin))
    # A garbage collection pass can stall the loop for milliseconds, which
    # would show up as send lag and TTFT error. Collection resumes after the trial.
    collecting = gc.isenabled()
    gc.disable()
    try:
        await issue
    finally:
        watcher.cancel()
        if collecting:
            gc.enable()
    return state


async def _issue_poisson(endpoint, prompts, model, plan: TrialPlan, state: TrialState, origin: float) -> None:
    total = plan.warmup_seconds + plan.duration_seconds
    tasks = []
    for index, offset in enumerate(poisson_arrivals(plan.level, total, plan.seed)):
        state.records.append(RequestRecord(plan.trial, index, offset, offset < plan.warmup_seconds))
    for record in state.records:
        await sleep_until(origin + record.scheduled)
        if state.stopped:
            break
        spec = RequestSpec(prompts[record.index % len(prompts)], plan.max_tokens, model)
        tasks.append(asyncio.create_task(stream_completion(endpoint, spec, record, origin, plan.request_timeout)))
    await _finish(tasks, state, plan)


async def sleep_until(deadline: float) -> None:
    """Sleep until `deadline` on the client clock, to within a few microseconds when the loop is idle.

    The event loop's timers wake up to a millisecond late (epoll counts whole
    milliseconds), so the last SPIN_SECONDS are spent yielding to the loop
    with sleep(0): pending I/O is still served while the deadline nears.
    """
    remaining = deadline - clock()
    if remaining > SPIN_SECONDS:
        await asyncio.sleep(remaining - SPIN_SECONDS)
    while clock() < deadline:
        await asyncio.sleep(0)


async def _issue_closed_loop(endpoint, prompts, model, plan: TrialPlan, state: TrialState, origin: float) -> None:
    total = plan.warmup_seconds + plan.duration_seconds

    async def worker() -> None:
        while not state.stopped and clock() - origin < total:
            now = clock() - origin
            record = RequestRecord(plan.trial, len(state.records), now, now < plan.warmup_seconds)
            state.records.append(record)
            spec = RequestSpec(prompts[record.index % len(prompts)], plan.max_tokens, model)
            await stream_completion(endpoint, spec, record, origin, plan.request_timeout)

    await asyncio.sleep(max(0.0, origin - clock()))
    tasks = [asyncio.create_task(worker()) for _ in range(int(plan.level))]
    await _finish(tasks, state, plan)


async def _finish(tasks: list[asyncio.Task], state: TrialState, plan: TrialPlan) -> None:
    """Wait for the issued requests; once the trial's outcome is certain, abort the rest."""
    pending = set(tasks)
    while pending and not state.stopped:
        _, pending = await asyncio.wait(pending, timeout=0.05)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for record in state.records:
        if record.status == "not_sent" and state.stopped:
            record.error = "the trial stopped before this request was due"


async def _watch(state: TrialState, origin: float) -> None:
    """Stop the trial once more requests missed the TTFT limit than the percentile allows.

    Requests still waiting past the limit count as misses, so an overloaded
    trial ends early with the verdict it would have had at its end. Its
    unsent requests are recorded as not_sent. The closed-loop model has no
    planned count, so it never stops early.
    Finished requests are counted once and dropped from the scan, so each
    check costs time in proportion to the requests in flight.
    """
    plan = state.plan
    if plan.load_model != "poisson":
        return
    open_records = [record for record in state.records if not record.warmup]
    allowed = allowed_misses(len(open_records), plan.percentile)
    finished_misses = 0
    while True:
        await asyncio.sleep(0.05)
        now = clock() - origin
        waiting = []
        for record in open_records:
            if record.end is not None:
                finished_misses += _missed(record, now, plan.ttft_limit)
            else:
                waiting.append(record)
        open_records = waiting
        misses = finished_misses + sum(1 for record in waiting if _missed(record, now, plan.ttft_limit))
        if misses > allowed:
            state.stopped = True
            state.stop_reason = f"{misses} measured requests missed the TTFT limit, more than the {allowed} allowed"
            return


def _missed(record: RequestRecord, now: float, limit: float) -> bool:
    if record.sent is None:
        return False
    if record.end is not None and record.status != OK:
        return True
    if record.first_token is not None:
        return record.first_token - record.sent > limit
    return now - record.sent > limit
