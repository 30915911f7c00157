"""Helpers for tests that run the agent under `python -m paddle.distributed.launch`."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from certification.records import decode_float, read_jsonl

REPO = Path(__file__).resolve().parents[2]


def environment() -> dict[str, str]:
    return {**os.environ, "AGENT_HEARTBEAT_SECONDS": "1"}


def run_arguments(out: Path, workloads: str, *extra: str) -> list[str]:
    """Return the arguments of `agent run` for the tiny profile, without the program."""
    return ["run", "--profile", "tiny", "--workloads", workloads, "--out", str(out), *extra]


def run_one_process(out: Path, workloads: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *run_arguments(out, workloads, *extra)], cwd=REPO,
                          env=environment(), capture_output=True, text=True, timeout=600)


def launcher_command(logs: Path, *launcher_options: str) -> list[str]:
    """Return the launcher's command line up to the script; the agent's arguments follow it."""
    return [sys.executable, "-m", "paddle.distributed.launch", *launcher_options, "--log_dir", str(logs),
            "agent/__main__.py"]


def worker_logs(logs: Path, tail: int = 2000) -> str:
    """Return the end of every worker log in `logs`, for an assertion message."""
    return "".join(f"--- {path.name}\n" + path.read_text(errors="replace")[-tail:] for path in sorted(logs.glob("workerlog.*")))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that no process listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def losses(run: Path, workload: str) -> dict[int, float]:
    return {record["step"]: decode_float(record["loss"])
            for record in read_jsonl(run / "workloads" / workload / "steps.jsonl")}
