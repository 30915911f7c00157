"""Benchmark: the wall time of `python -m agent ... --help`, which is all start-up and argument parsing.

    python benchmarks/agent_startup.py [--repeat 7] [--root DIR]

Each command runs `--repeat` times in a fresh interpreter, in rotation so
that a change in the machine's load touches every command alike, and the
fastest and median wall times are printed per command, then as one JSON
line. `--root` runs the agent of another checkout (such as an older commit
exported with `git archive`) with this interpreter, for a before and after
comparison on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (
    ["--help"],
    ["verify", "--help"],
    ["bundle", "--help"],
    ["keygen", "--help"],
    ["validate-pack", "--help"],
    ["upload", "--help"],
    ["check", "--help"],
    ["run", "--help"],
)


def time_command(root: Path, arguments: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "agent", *arguments], cwd=root, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each command (default: 7)")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose agent to run (default: this one)")
    args = parser.parse_args()

    times: dict[str, list[float]] = {" ".join(arguments): [] for arguments in COMMANDS}
    for _round in range(args.repeat):
        for arguments in COMMANDS:
            times[" ".join(arguments)].append(time_command(args.root, arguments))

    summary = {name: {"fastest_s": round(min(values), 3), "median_s": round(statistics.median(values), 3)} for name, values in times.items()}
    for name, figures in summary.items():
        print(f"{name:22} fastest {figures['fastest_s']:.2f} s, median {figures['median_s']:.2f} s")
    print(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "root": str(args.root),
        "repeat": args.repeat,
        "commands": summary,
    }))


if __name__ == "__main__":
    main()
