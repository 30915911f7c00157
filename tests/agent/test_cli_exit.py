"""How `python -m agent` ends: a process of a launched job skips the interpreter's teardown, others do not."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A child that registers an exit handler, leaves a line in its block-buffered stdout, records one input check
# result of its own, and ends through exit_process with code 3.
CHILD = """
import atexit, sys
from pathlib import Path
from agent.cli import exit_process
from agent.runner import node_inputs

folder = Path(sys.argv[1])
atexit.register((folder / "teardown-ran").touch)
result = folder / "inputs-result.json"
result.write_text("{}")
node_inputs.remove_at_exit(result)
print("last line of the run", end="")
exit_process(3)
"""


def end_child(folder: Path, **environment: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if not key.startswith("PADDLE_")}
    return subprocess.run([sys.executable, "-c", CHILD, str(folder)], cwd=REPO, env={**base, **environment},
                          capture_output=True, text=True, timeout=120)


def test_launched_process_skips_teardown(tmp_path):
    ended = end_child(tmp_path, PADDLE_TRAINER_ID="1", PADDLE_TRAINERS_NUM="2")

    assert ended.returncode == 3, ended.stderr
    assert ended.stdout == "last line of the run"
    assert not (tmp_path / "teardown-ran").exists()
    assert not (tmp_path / "inputs-result.json").exists()


def test_plain_process_runs_teardown(tmp_path):
    ended = end_child(tmp_path)

    assert ended.returncode == 3, ended.stderr
    assert ended.stdout == "last line of the run"
    assert (tmp_path / "teardown-ran").exists()
    assert not (tmp_path / "inputs-result.json").exists()
