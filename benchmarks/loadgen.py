"""Benchmark of the load generator's own accuracy against a trivial streaming server on loopback.

    python benchmarks/loadgen.py [--rates 100 250 500] [--seconds 10]

Starts a trivial OpenAI-compatible streaming server in a child process (it
answers every request with a fixed number of text chunks after a fixed
delay and writes its own timestamps), drives it with one open-loop Poisson
trial per rate, and prints per rate:

- achieved arrival rate: (sends - 1) / (last send - first send), against the target;
- issue-time lag: actual send minus scheduled send, p50, p99 and max;
- TTFT error: client TTFT (kernel receive time of the first text chunk minus
  the time just before the request is written) minus the server's own (time
  just before the first text chunk is written minus the kernel receive time
  of the request's first bytes), p50, p99 and max of the absolute value; and
  for comparison p50 and p99 against the server's TTFT from the time its
  event loop handed it the request.

The load generator opens each connection ahead of the request
(`--connect-ahead-ms`, by default its own setting; 0 opens it at the
scheduled time and sends once it is open), so both TTFTs start at the
request itself, not at the connection set-up.

Targets: rate within 2% of the target, lag p99 under 2 ms and TTFT error
p99 under 1 ms. The exit status is 1 when a target is missed. Both
processes read time.perf_counter, which is CLOCK_MONOTONIC on Linux, so
their timestamps share one clock.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
from collections import Counter
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.inference.loadgen import CONNECT_AHEAD_SECONDS, SO_TIMESTAMPNS, Endpoint, StampedConnection, TrialPlan, run_trial  # noqa: E402

RATE_TOLERANCE = 0.02
LAG_P99_MAX = 0.002
TTFT_ERROR_P99_MAX = 0.001


# The trivial server (child process) ------------------------------------------


class TrivialCompletion:
    """Reply to one request: a role-only chunk at once, then after `delay` `chunks` text chunks, usage and [DONE].

    The two ends of the time to first token as the server measures it are
    `received`, the kernel's receive time of the request's first bytes, and
    `first_token`, read just before the first text chunk is written.
    `received_loop` is the time the event loop handed those bytes over.
    """

    def __init__(self, log, delay: float, chunks: int):
        self.log, self.delay, self.chunks = log, delay, chunks
        self.buffer = b""
        self.received: float | None = None
        self.received_loop: float | None = None
        self.accepted = 0.0

    def connection_made(self, transport) -> None:
        self.accepted = time.perf_counter()
        self.transport = transport

    def feed(self, data: bytes, arrived: float) -> None:
        if self.received is None:
            self.received, self.received_loop = arrived, time.perf_counter()
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = int([line for line in self.buffer[:end].split(b"\r\n") if line.lower().startswith(b"content-length")][0].split(b":")[1])
        if len(self.buffer) < end + 4 + length:
            return
        prompt = json.loads(self.buffer[end + 4:end + 4 + length])["prompt"]
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                             b"Connection: close\r\n\r\n" + _chunk({"choices": [{"index": 0, "text": ""}]}))
        asyncio.get_running_loop().call_later(self.delay, self._stream, prompt)

    def _stream(self, prompt: str) -> None:
        frames = [_chunk({"choices": [{"index": 0, "text": f" t{number}"}]}) for number in range(self.chunks)]
        rest = _chunk({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": self.chunks}})
        rest += _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        first = time.perf_counter()
        for frame in frames:
            self.transport.write(frame)
        self.transport.write(rest)
        self.transport.close()
        self.log.write(json.dumps({"prompt": prompt, "accepted": self.accepted, "received": self.received,
                                   "received_loop": self.received_loop, "first_token": first}) + "\n")

    def eof_received(self) -> None:
        pass

    def connection_lost(self, error: Exception | None) -> None:
        pass


async def serve(port_file: Path, log_file: Path, delay: float, chunks: int) -> None:
    # Collection pauses between the server's stamp and its write would count against the load generator.
    gc.disable()
    log = open(log_file, "a", buffering=1)
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    listener.setblocking(False)
    port_file.write_text(str(listener.getsockname()[1]))
    while True:
        connection, _ = await loop.sock_accept(listener)
        connection.setblocking(False)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # The load generator's own kernel-stamped connection serves as the server's transport.
        StampedConnection(loop, connection, TrivialCompletion(log, delay, chunks), kernel_stamps=True)


def _frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _chunk(event: dict) -> bytes:
    return _frame(b"data: " + json.dumps(event).encode() + b"\n\n")


# The measurement (parent process) ----------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def measure(rate: float, seconds: float, port: int, log_file: Path, trial: int, connect_ahead: float) -> dict:
    prompts = [f"request-{trial}-{index}" for index in range(int(rate * seconds) + 10)]
    plan = TrialPlan(trial=trial, load_model="poisson", level=rate, warmup_seconds=0.0, duration_seconds=seconds,
                     max_tokens=4, ttft_limit=1.0, percentile=99.0, request_timeout=10.0, seed=trial,
                     connect_ahead_seconds=connect_ahead)
    log_file.write_text("")
    state = asyncio.run(run_trial(Endpoint.parse(f"http://127.0.0.1:{port}/v1/completions"), prompts, "trivial", plan))
    time.sleep(0.3)
    server = {row["prompt"]: row for row in map(json.loads, log_file.read_text().splitlines())}

    records = [record for record in state.records if record.sent is not None]
    failed = [record for record in records if record.status != "ok"]
    sends = sorted(record.sent for record in records)
    achieved = (len(sends) - 1) / (sends[-1] - sends[0])
    lags = [record.sent - record.scheduled for record in records]
    errors, loop_errors = [], []
    for record in records:
        row = server.get(prompts[record.index % len(prompts)])
        if record.status == "ok" and row:
            errors.append(abs(record.ttft - (row["first_token"] - row["received"])))
            loop_errors.append(abs(record.ttft - (row["first_token"] - row["received_loop"])))
    return {
        "target_rate": rate, "requests": len(records), "failed": len(failed),
        "failed_statuses": dict(Counter(record.status for record in failed)),
        "achieved_rate": achieved, "rate_error": achieved / rate - 1.0,
        "lag_p50_ms": 1e3 * percentile(lags, 50), "lag_p99_ms": 1e3 * percentile(lags, 99), "lag_max_ms": 1e3 * max(lags),
        "ttft_error_p50_ms": 1e3 * percentile(errors, 50), "ttft_error_p99_ms": 1e3 * percentile(errors, 99),
        "ttft_error_max_ms": 1e3 * max(errors), "ttft_compared": len(errors),
        "loop_error_p50_ms": 1e3 * percentile(loop_errors, 50), "loop_error_p99_ms": 1e3 * percentile(loop_errors, 99),
        "receive_stamps": dict(Counter(record.receive_stamp for record in records)),
    }


def passed(row: dict) -> bool:
    return (row["failed"] == 0 and abs(row["rate_error"]) <= RATE_TOLERANCE
            and row["lag_p99_ms"] < LAG_P99_MAX * 1e3 and row["ttft_error_p99_ms"] < TTFT_ERROR_P99_MAX * 1e3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 250.0, 500.0], help="target arrival rates, requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each trial, seconds")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="server delay before the first text chunk, ms")
    parser.add_argument("--connect-ahead-ms", type=float, default=1e3 * CONNECT_AHEAD_SECONDS,
                        help="open each connection this long before its request is due, ms (0: at the scheduled time)")
    parser.add_argument("--serve", nargs=2, metavar=("PORT_FILE", "LOG_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), Path(args.serve[1]), args.delay_ms / 1e3, 4))
        return 0

    with tempfile.TemporaryDirectory() as folder:
        port_file, log_file = Path(folder) / "port", Path(folder) / "server.jsonl"
        child = subprocess.Popen([sys.executable, __file__, "--delay-ms", str(args.delay_ms), "--serve", str(port_file), str(log_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            rows = [measure(rate, args.seconds, int(port_file.read_text()), log_file, trial, args.connect_ahead_ms / 1e3)
                    for trial, rate in enumerate(args.rates)]
        finally:
            child.terminate()
            child.wait()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
          f"connections opened {args.connect_ahead_ms:g} ms ahead")
    print("target req/s | achieved | error | lag p50/p99/max ms | TTFT error p50/p99/max ms | failed | ok"
          " | TTFT error against the server's event-loop stamp p50/p99 ms | client receive stamps")
    for row in rows:
        print(f"{row['target_rate']:>12g} | {row['achieved_rate']:8.1f} | {row['rate_error']:+.2%} | "
              f"{row['lag_p50_ms']:.3f}/{row['lag_p99_ms']:.3f}/{row['lag_max_ms']:.3f} | "
              f"{row['ttft_error_p50_ms']:.3f}/{row['ttft_error_p99_ms']:.3f}/{row['ttft_error_max_ms']:.3f} | "
              f"{row['failed']} {row['failed_statuses'] or ''} | {'yes' if passed(row) else 'NO'} | "
              f"{row['loop_error_p50_ms']:.3f}/{row['loop_error_p99_ms']:.3f} | {row['receive_stamps']}")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (1 min)")
    return 0 if all(passed(row) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
