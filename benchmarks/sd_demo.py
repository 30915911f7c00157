"""Time the tiny Stable Diffusion demo: `python -m agent run --profile demo-sd` on this machine.

Prints the wall time and the CPU time (user + system) of the run, the summed
step seconds of the 200 SD fine-tuning steps and the images per second of the
SD inference workload, as recorded in the run folder. Target: about 2 minutes
of CPU time for the whole run on a 2-core machine.

    python benchmarks/sd_demo.py [--profile demo-sd]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo-sd", help="run profile to time (default: demo-sd)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sd-bench-") as folder:
        out = Path(folder) / "run"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        completed = subprocess.run([sys.executable, "-m", "agent", "run", "--profile", args.profile, "--out", str(out)],
                                   cwd=REPO, capture_output=True, text=True)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if completed.returncode != 0:
            print(completed.stderr[-3000:], file=sys.stderr)
            return completed.returncode
        steps = read_jsonl(out / "workloads" / "sd-sft-digits" / "steps.jsonl")
        images = read_jsonl(out / "workloads" / "sd-infer-digits" / "images.jsonl")

    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"date (UTC):        {datetime.now(timezone.utc):%Y-%m-%d %H:%M}")
    print(f"machine:           {platform.machine()}, {platform.system()} {platform.release()}, Python {platform.python_version()}")
    print(f"profile:           {args.profile}")
    print(f"wall time:         {wall:.1f} s")
    print(f"CPU time:          {cpu:.1f} s")
    print(f"training steps:    {len(steps)}, {sum(row['step_seconds'] for row in steps):.1f} s of step time")
    print(f"inference images:  {len(images)}, {len(images) / sum(row['seconds'] for row in images):.2f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
