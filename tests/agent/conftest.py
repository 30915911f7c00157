"""Fixtures shared by the agent's test modules."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The launcher's endpoints of a two-process job, which the run lock takes as the job's token.
TWO_PROCESS_JOB = "127.0.0.1:6170,127.0.0.1:6171"

# Lock `folder` as rank RANK (as a launched job's process when the third argument is "launched"),
# print "locked" and sleep until killed.
HOLDER = """
import sys, time
from pathlib import Path
from agent.runner.lock import lock_follower, lock_leader
folder, rank, launched = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "launched"
lock = lock_leader(folder, launched=launched) if rank == 0 else lock_follower(folder, rank, timeout=30)
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def lock_holders():
    """Start processes that hold a run folder's lock; kill those still running at the end.

    A process is rank `rank` of the launched job `job`, or, with job None,
    the single process of a run started without the launcher.
    """
    started: list[subprocess.Popen] = []

    def start(folder: Path, rank: int = 0, job: str | None = TWO_PROCESS_JOB) -> subprocess.Popen:
        environment = {key: value for key, value in os.environ.items() if key != "PADDLE_TRAINER_ENDPOINTS"}
        if job is not None:
            environment["PADDLE_TRAINER_ENDPOINTS"] = job
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(rank), "launched" if job is not None else "alone"],
                                   cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(process)
        line = process.stdout.readline()
        assert line == "locked\n", process.stderr.read() if process.poll() is not None else line
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
