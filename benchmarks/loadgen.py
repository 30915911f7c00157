"""Benchmark of the load generator's own accuracy against a trivial streaming server on loopback.

    python benchmarks/loadgen.py [--rates 100 250 500] [--seconds 10]

Starts a trivial OpenAI-compatible streaming server in a child process (it
answers every request with a fixed number of text chunks after a fixed
delay and writes its own timestamps), drives it with one open-loop Poisson
trial per rate, and prints per rate:

- achieved arrival rate: (sends - 1) / (last send - first send), against the target;
- issue-time lag: actual send minus scheduled send, p50, p99 and max;
- TTFT error: client TTFT minus the server's own (first text chunk written
  minus connection accepted), p50, p99 and max of the absolute value.

Targets: rate within 2% of the target, lag p99 under 2 ms and TTFT error
p99 under 1 ms. The exit status is 1 when a target is missed. Both
processes read time.perf_counter, which is CLOCK_MONOTONIC on Linux, so
their timestamps share one clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.inference.loadgen import Endpoint, TrialPlan, run_trial  # noqa: E402

RATE_TOLERANCE = 0.02
LAG_P99_MAX = 0.002
TTFT_ERROR_P99_MAX = 0.001


# The trivial server (child process) ------------------------------------------


async def serve(port_file: Path, log_file: Path, delay: float, chunks: int) -> None:
    log = open(log_file, "a", buffering=1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = time.perf_counter()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int([line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0].split(b":")[1])
        prompt = json.loads(await reader.readexactly(length))["prompt"]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        _chunk(writer, {"choices": [{"index": 0, "text": ""}]})
        await asyncio.sleep(delay)
        first = time.perf_counter()
        for number in range(chunks):
            _chunk(writer, {"choices": [{"index": 0, "text": f" t{number}"}]})
            await writer.drain()
        _chunk(writer, {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": chunks}})
        writer.write(_frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        writer.close()
        log.write(json.dumps({"prompt": prompt, "accepted": accepted, "first_token": first}) + "\n")

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


def _frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _chunk(writer: asyncio.StreamWriter, event: dict) -> None:
    writer.write(_frame(b"data: " + json.dumps(event).encode() + b"\n\n"))


# The measurement (parent process) ----------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def measure(rate: float, seconds: float, port: int, log_file: Path, trial: int) -> dict:
    prompts = [f"request-{trial}-{index}" for index in range(int(rate * seconds) + 10)]
    plan = TrialPlan(trial=trial, load_model="poisson", level=rate, warmup_seconds=0.0, duration_seconds=seconds,
                     max_tokens=4, ttft_limit=1.0, percentile=99.0, request_timeout=10.0, seed=trial)
    log_file.write_text("")
    state = asyncio.run(run_trial(Endpoint.parse(f"http://127.0.0.1:{port}/v1/completions"), prompts, "trivial", plan))
    time.sleep(0.3)
    server = {row["prompt"]: row for row in map(json.loads, log_file.read_text().splitlines())}

    records = [record for record in state.records if record.sent is not None]
    failed = [record for record in records if record.status != "ok"]
    sends = sorted(record.sent for record in records)
    achieved = (len(sends) - 1) / (sends[-1] - sends[0])
    lags = [record.sent - record.scheduled for record in records]
    errors = []
    for record in records:
        row = server.get(prompts[record.index % len(prompts)])
        if record.status == "ok" and row:
            errors.append(abs(record.ttft - (row["first_token"] - row["accepted"])))
    return {
        "target_rate": rate, "requests": len(records), "failed": len(failed),
        "failed_statuses": dict(Counter(record.status for record in failed)),
        "achieved_rate": achieved, "rate_error": achieved / rate - 1.0,
        "lag_p50_ms": 1e3 * percentile(lags, 50), "lag_p99_ms": 1e3 * percentile(lags, 99), "lag_max_ms": 1e3 * max(lags),
        "ttft_error_p50_ms": 1e3 * percentile(errors, 50), "ttft_error_p99_ms": 1e3 * percentile(errors, 99),
        "ttft_error_max_ms": 1e3 * max(errors), "ttft_compared": len(errors),
    }


def passed(row: dict) -> bool:
    return (row["failed"] == 0 and abs(row["rate_error"]) <= RATE_TOLERANCE
            and row["lag_p99_ms"] < LAG_P99_MAX * 1e3 and row["ttft_error_p99_ms"] < TTFT_ERROR_P99_MAX * 1e3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 250.0, 500.0], help="target arrival rates, requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each trial, seconds")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="server delay before the first text chunk, ms")
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
            rows = [measure(rate, args.seconds, int(port_file.read_text()), log_file, trial)
                    for trial, rate in enumerate(args.rates)]
        finally:
            child.terminate()
            child.wait()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}")
    print("target req/s | achieved | error | lag p50/p99/max ms | TTFT error p50/p99/max ms | failed | ok")
    for row in rows:
        print(f"{row['target_rate']:>12g} | {row['achieved_rate']:8.1f} | {row['rate_error']:+.2%} | "
              f"{row['lag_p50_ms']:.3f}/{row['lag_p99_ms']:.3f}/{row['lag_max_ms']:.3f} | "
              f"{row['ttft_error_p50_ms']:.3f}/{row['ttft_error_p99_ms']:.3f}/{row['ttft_error_max_ms']:.3f} | "
              f"{row['failed']} {row['failed_statuses'] or ''} | {'yes' if passed(row) else 'NO'}")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (1 min)")
    return 0 if all(passed(row) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
