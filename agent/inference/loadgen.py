"""Load generator for OpenAI-compatible streaming completions servers.

One asyncio event loop issues every request over its own new HTTP/1.1
connection (plain or TLS), reads the server-sent events as they arrive and
records per request: scheduled time, connection start and set-up, send time
(taken just before the request's bytes are written), time of the first chunk
that carries generated text, end time, status and token counts. Chunks
without text (role-only, empty, keep-alive comments) do not end the time to
first token. Failed, timed-out and aborted requests are recorded with their
status and never dropped.

An open-loop trial opens each request's connection `connect_ahead_seconds`
before the request is due and writes the request at its scheduled time, so
neither the send time nor the time to first token includes the TCP (and TLS)
set-up. On plain HTTP every read carries the time the kernel received its
bytes (SO_TIMESTAMPNS, Linux), so a busy event loop does not delay the
first token's stamp. Over TLS, and where that option is missing, a read is
stamped when the event loop hands it over, before any parsing. Each request
records which in `receive_stamp` ("kernel" or "event_loop").

Clock: `time.perf_counter`, which is CLOCK_MONOTONIC on Linux and therefore
comparable with another process's `perf_counter` on the same machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import ipaddress
import json
import logging
import math
import random
import socket
import ssl
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from certification.latency import OK, allowed_misses

from agent.i18n import N_

logger = logging.getLogger(__name__)

clock = time.perf_counter

MAX_ERROR_TEXT = 300
MAX_HEADER_BYTES = 64 * 1024
SPIN_SECONDS = 0.0015
CONNECT_AHEAD_SECONDS = 0.05
# The error texts that requests.jsonl records for the requests of a trial that stopped early; the log translates them.
NOT_SENT_ERROR = N_("the trial stopped before this request was due")
ABORTED_ERROR = N_("the trial stopped before this request finished")


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
    connect_start: float | None = None
    connected: float | None = None
    sent: float | None = None
    receive_stamp: str = ""
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
                            timeout: float, send_at: float | None = None) -> None:
    """Open a connection, send one streaming request at `send_at` (client clock; None: at once) and fill `record`.

    The connection is opened first and the request is written when `send_at`
    comes. So `sent` and the time to first token do not include the
    connection set-up, which `connect_start` and `connected` record.
    Connecting and the response each have `timeout` seconds. Server and connection
    failures, timeouts included, are recorded in `record.status` and not
    raised. Cancellation is recorded and re-raised.
    """
    record.requested_tokens = spec.max_tokens
    record.status = "in_flight"
    transport = None
    try:
        for attempt in (1, 2):
            transport, exchange = await _connect(endpoint, record, origin, timeout)
            if send_at is not None:
                await sleep_until(send_at)
            if not exchange.closed_before_request or attempt == 2:
                break
            # The server closed the idle connection before the request was due: open a new one at once.
            transport.close()
        record.sent = clock() - origin
        transport.write(_request_bytes(endpoint, spec))
        async with asyncio.timeout(timeout):
            await exchange.finished
        record.status = OK
    except TimeoutError:
        stage = "connection" if record.connected is None else "complete response"
        record.status, record.error = "timeout", f"no {stage} within {timeout:g} s"
    except OSError as error:
        kind = "connect_error" if record.first_token is None and record.http_status is None else "connection_lost"
        record.status, record.error = kind, f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT]
    except (ValueError, UnicodeError) as error:
        record.status, record.error = "malformed", f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT]
    except StreamFailure as failure:
        record.status, record.error = failure.status, str(failure)[:MAX_ERROR_TEXT]
        record.http_status = failure.http_status or record.http_status
    except asyncio.CancelledError:
        if record.sent is None:
            record.status, record.error = "not_sent", NOT_SENT_ERROR
        else:
            record.status, record.error = "aborted", ABORTED_ERROR
        raise
    finally:
        if record.status != "not_sent":
            record.end = clock() - origin
        if record.sent is None and record.status != "not_sent":
            # The request could not be written; it counts as sent, and failed, when it failed.
            record.sent = record.end
        if transport is not None:
            transport.close()


async def _connect(endpoint: Endpoint, record: RequestRecord, origin: float, timeout: float):
    loop = asyncio.get_running_loop()
    record.connect_start = clock() - origin
    exchange = ResponseReader(record, origin, loop)
    async with asyncio.timeout(timeout):
        if endpoint.tls:
            transport, _ = await loop.create_connection(lambda: exchange, endpoint.host, endpoint.port,
                                                        ssl=ssl.create_default_context())
            record.receive_stamp = "event_loop"
        else:
            transport = await StampedConnection.open(loop, endpoint, exchange)
            record.receive_stamp = "kernel" if transport.kernel_stamps else "event_loop"
    record.connected = clock() - origin
    return transport, exchange


# Linux's SO_TIMESTAMPNS: each read carries the time the kernel received the data, as a struct timespec.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@ll")


class StampedConnection:
    """A plain TCP connection whose reads carry the kernel's receive time (SO_TIMESTAMPNS, Linux only).

    The stamp taken in `data_received` still waits for the event loop to get
    to the socket, which takes milliseconds on a busy machine. The kernel
    stamps each segment when it arrives, and a read returns the stamp of the
    last segment it consumed, so a chunk is never stamped before it arrived.
    The stamp is on CLOCK_REALTIME; it is moved onto the client clock by the
    difference of the two clocks read together right after the read. Where
    the option is missing (not Linux), reads are stamped by the event loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: ResponseReader, kernel_stamps: bool):
        self.loop, self.sock, self.protocol, self.kernel_stamps = loop, sock, protocol, kernel_stamps
        self.unsent = b""
        self.closed = False
        protocol.connection_made(self)
        loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def open(cls, loop: asyncio.AbstractEventLoop, endpoint: Endpoint, protocol: ResponseReader) -> StampedConnection:
        try:
            ipaddress.ip_address(endpoint.host)
            addresses = [(socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET, (endpoint.host, endpoint.port))]
        except ValueError:
            addresses = [(family, address) for family, _, _, _, address
                         in await loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)]
        error: OSError = OSError(f"no address found for {endpoint.host}")
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                kernel_stamps = sys.platform.startswith("linux")
                if kernel_stamps:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                await loop.sock_connect(sock, address)
                return cls(loop, sock, protocol, kernel_stamps)
            except OSError as failure:
                sock.close()
                error = failure
            except BaseException:
                sock.close()
                raise
        raise error

    def _readable(self) -> None:
        while not self.closed:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(TIMESPEC.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._lose(error)
                return
            now, real_ns = clock(), time.time_ns()
            if not data:
                self.protocol.eof_received()
                self._lose(None)
                return
            arrived = now
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= TIMESPEC.size:
                    seconds, nanoseconds = TIMESPEC.unpack(payload[:TIMESPEC.size])
                    arrived = min(now, now - (real_ns - seconds * 1_000_000_000 - nanoseconds) / 1e9)
            self.protocol.feed(data, arrived)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.unsent:
            try:
                written = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as error:
                self._lose(error)
                return
            data = data[written:]
            if not data:
                return
            self.loop.add_writer(self.sock.fileno(), self._writable)
        self.unsent += data

    def _writable(self) -> None:
        try:
            written = self.sock.send(self.unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(error)
            return
        self.unsent = self.unsent[written:]
        if not self.unsent:
            self.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        self._lose(None)

    def _lose(self, error: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.protocol.connection_lost(error)


def _request_bytes(endpoint: Endpoint, spec: RequestSpec) -> bytes:
    body = spec.body()
    host = endpoint.host if ":" not in endpoint.host else f"[{endpoint.host}]"
    head = (
        f"POST {endpoint.path} HTTP/1.1\r\nHost: {host}:{endpoint.port}\r\n"
        "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ResponseReader(asyncio.Protocol):
    """Parse one HTTP response as its bytes arrive, and fill the request record.

    `feed` takes each read with its arrival time: the kernel's, from
    StampedConnection, or the event loop's, from `data_received` (TLS).
    Either way the first text chunk is stamped before any parsing and
    without waiting for a task to be scheduled. The body may use chunked
    transfer coding, Content-Length or end at close. `finished` resolves at
    data: [DONE], or fails with a StreamFailure or OSError.
    """

    def __init__(self, record: RequestRecord, origin: float, loop: asyncio.AbstractEventLoop):
        self.record = record
        self.origin = origin
        self.loop = loop
        self.finished: asyncio.Future = loop.create_future()
        # A failure that arrives after the request was aborted has no reader; mark it as seen.
        self.finished.add_done_callback(lambda future: future.cancelled() or future.exception())
        self.buffer = bytearray()
        self.state = "head"  # head, size, data, crlf, length, close, error_body
        self.remaining = 0
        self.events = EventParser()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.error_timer: asyncio.TimerHandle | None = None
        self.closed_before_request = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.feed(data, clock())

    def feed(self, data: bytes, arrived: float) -> None:
        """Parse `data`, whose bytes arrived at `arrived` on the client clock."""
        if self.finished.done():
            return
        self.buffer += data
        try:
            self._parse(arrived)
        except StreamFailure as failure:
            self._end(failure)
        except (ValueError, UnicodeError) as error:
            self._end(error)

    def eof_received(self) -> bool:
        self._closed(None)
        return False

    def connection_lost(self, error: Exception | None) -> None:
        self._closed(error)

    def _closed(self, error: Exception | None) -> None:
        if self.error_timer is not None:
            self.error_timer.cancel()
        if self.finished.done():
            return
        if self.state == "head" and not self.buffer and self.record.sent is None:
            self.closed_before_request = True
        if error is not None:
            self._end(error)
        elif self.state == "error_body":
            self._error_body_done()
        elif self.state == "head":
            self._end(StreamFailure("malformed", "the server closed the connection before a full HTTP header: "
                                                 f"{bytes(self.buffer[:80])!r}"))
        elif self.state in ("size", "data", "crlf", "length"):
            self._end(StreamFailure("incomplete", f"the connection closed in the middle of the body ({self.state})"))
        else:
            self._end(StreamFailure("incomplete", "the stream ended before data: [DONE]"))

    def _end(self, outcome: BaseException | None) -> None:
        if self.finished.done():
            return
        if outcome is None:
            self.finished.set_result(None)
        else:
            self.finished.set_exception(outcome)

    def _parse(self, arrived: float) -> None:
        while not self.finished.done():
            if self.state == "head":
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEADER_BYTES:
                        raise StreamFailure("malformed", f"the HTTP header is larger than {MAX_HEADER_BYTES} bytes")
                    return
                head = bytes(self.buffer[:end])
                del self.buffer[:end + 4]
                self._head(head)
            elif self.state == "error_body":
                if len(self.buffer) >= 2048 or (self.remaining and len(self.buffer) >= self.remaining):
                    self._error_body_done()
                return
            elif self.state == "size":
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    if len(self.buffer) > 1024:
                        raise StreamFailure("malformed", f"invalid chunk size line {bytes(self.buffer[:40])!r}")
                    return
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 2]
                try:
                    self.remaining = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise StreamFailure("malformed", f"invalid chunk size line {line[:40]!r}")
                if self.remaining == 0:
                    raise StreamFailure("incomplete", "the stream ended before data: [DONE]")
                self.state = "data"
            elif self.state in ("data", "length", "close"):
                if not self.buffer:
                    return
                take = len(self.buffer) if self.state == "close" else min(self.remaining, len(self.buffer))
                piece = bytes(self.buffer[:take])
                del self.buffer[:take]
                self.remaining -= take
                self._events(piece, arrived)
                if self.state == "data" and self.remaining == 0:
                    self.state = "crlf"
                elif self.state == "length" and self.remaining == 0:
                    raise StreamFailure("incomplete", "the stream ended before data: [DONE]")
            elif self.state == "crlf":
                if len(self.buffer) < 2:
                    return
                if self.buffer[:2] != b"\r\n":
                    raise StreamFailure("malformed", f"invalid chunked body: no CRLF after a chunk of the size given, got {bytes(self.buffer[:40])!r}")
                del self.buffer[:2]
                self.state = "size"

    def _head(self, head: bytes) -> None:
        status, self.headers = _parse_head(head)
        self.status = self.record.http_status = status
        content_type = self.headers.get("content-type", "")
        if status != 200 or "text/event-stream" not in content_type:
            self.state = "error_body"
            length = self.headers.get("content-length", "")
            self.remaining = min(int(length), 2048) if length.isdigit() else 0
            self.error_timer = self.loop.call_later(1.0, self._error_body_done)
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self.state = "size"
        elif "content-length" in self.headers:
            self.state, self.remaining = "length", int(self.headers["content-length"])
        else:
            self.state = "close"

    def _error_body_done(self) -> None:
        if self.error_timer is not None:
            self.error_timer.cancel()
        body = bytes(self.buffer[:2048]).decode("utf-8", "replace").strip()[:MAX_ERROR_TEXT]
        if self.status != 200:
            self._end(StreamFailure("http_error", f"HTTP {self.status}: {body}", self.status))
        else:
            content_type = self.headers.get("content-type", "")
            self._end(StreamFailure("malformed", f"expected Content-Type text/event-stream, got {content_type!r}: {body}"))

    def _events(self, piece: bytes, arrived: float) -> None:
        for data in self.events.feed(piece):
            if _handle_event(data, self.record, arrived - self.origin):
                self._end(None)
                return


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
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


def _handle_event(data: str, record: RequestRecord, arrived: float) -> bool:
    """Apply one event, whose bytes arrived at `arrived` (trial time), to the record. Return True at data: [DONE]."""
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
            record.first_token = arrived
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
    connect_ahead_seconds: float = CONNECT_AHEAD_SECONDS

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
    # The counts behind an early stop, for the log line in the user's language (stop_reason is the English record).
    stop_misses: int = 0
    stop_allowed: int = 0


async def run_trial(endpoint: Endpoint, prompts: list[str], model: str, plan: TrialPlan) -> TrialState:
    """Run one trial under its load model and return every request record, issued or not."""
    state = TrialState(plan)
    # The first requests also get their connections `connect_ahead_seconds` ahead.
    origin = clock() + 0.05 + plan.connect_ahead_seconds
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
    ahead = plan.connect_ahead_seconds
    for record in state.records:
        # Each request's task opens its connection `ahead` seconds early and sends at the scheduled time itself.
        if ahead > 0:
            await asyncio.sleep(max(0.0, origin + record.scheduled - ahead - clock()))
        else:
            await sleep_until(origin + record.scheduled)
        if state.stopped:
            break
        spec = RequestSpec(prompts[record.index % len(prompts)], plan.max_tokens, model)
        tasks.append(asyncio.create_task(stream_completion(endpoint, spec, record, origin, plan.request_timeout,
                                                           send_at=origin + record.scheduled)))
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
            record.error = NOT_SENT_ERROR


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
            state.stop_misses, state.stop_allowed = misses, allowed
            return


def _missed(record: RequestRecord, now: float, limit: float) -> bool:
    if record.sent is None:
        return False
    if record.end is not None and record.status != OK:
        return True
    if record.first_token is not None:
        return record.first_token - record.sent > limit
    return now - record.sent > limit
