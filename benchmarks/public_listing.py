"""Benchmark: the public listing with 1,000 certified cards served by gunicorn, against a static file on the same server.

    python benchmarks/public_listing.py [--cards 1000] [--requests 600] [--concurrency 8] [--workers 2]

Builds a fresh SQLite portal with the cards (not timed), starts gunicorn
(sync workers) on a free loopback port, and sends the same number of GET
requests to `/` (the first page of the listing, 100 rows), `/?q=X0042` (a
search) and the static file, one URL after the other, from a pool of client
threads in this process. Reports requests per second and latency
percentiles for each. Client and server share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from portal_data import populate, setup_django

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(port: int, path: str) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={"Accept-Language": "zh-hans"})
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path} returned HTTP {response.status}, expected 200")
    return time.perf_counter() - started


def measure(port: int, path: str, count: int, concurrency: int) -> dict:
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: fetch(port, path), range(concurrency * 2)))  # warm-up
        started = time.perf_counter()
        latencies = sorted(pool.map(lambda _: fetch(port, path), range(count)))
        elapsed = time.perf_counter() - started
    percentile = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    return {"path": path, "requests": count, "rps": round(count / elapsed, 1), "p50_ms": round(percentile(0.50), 1), "p99_ms": round(percentile(0.99), 1)}


def wait_for(port: int, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            fetch(port, "/bench-static/portal.css")
            return
        except (OSError, RuntimeError):
            time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not respond on port {port} within {deadline_s} s; run it by hand to see its error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=1000, help="certified cards in the database (default 1000)")
    parser.add_argument("--requests", type=int, default=600, help="requests per URL (default 600)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    options = parser.parse_args()

    var_dir = setup_django()
    populate(options.cards)
    port = free_port()
    environment = {**os.environ, "PORTAL_VAR_DIR": str(var_dir), "PYTHONPATH": f"{ROOT}:{ROOT / 'benchmarks'}", "PORTAL_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "listing_wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(options.workers), "--log-level", "warning"],
        cwd=ROOT, env=environment,
    )
    try:
        wait_for(port)
        results = [measure(port, path, options.requests, options.concurrency) for path in ("/bench-static/portal.css", "/", "/?q=X0042")]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    for row in results:
        print(f"{row['path']:<28} {row['rps']:>8} req/s   p50 {row['p50_ms']} ms   p99 {row['p99_ms']} ms")
    print(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "machine": platform.platform(), "cpus": os.cpu_count(),
                      "cards": options.cards, "workers": options.workers, "concurrency": options.concurrency, "results": results}))


if __name__ == "__main__":
    main()
