"""Helpers for tests that run the agent under `python -m paddle.distributed.launch`."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from certification.records import decode_float, read_json, read_jsonl

REPO = Path(__file__).resolve().parents[2]


def environment() -> dict[str, str]:
    """Return this process's environment with English agent messages and a heartbeat every second.

    The tests read the agent's English log lines. A module-scoped fixture launches its runs before the autouse
    english_messages fixture sets LANG, so the locale is set here as well.
    """
    inherited = {name: value for name, value in os.environ.items() if name not in ("LC_ALL", "LC_MESSAGES")}
    return {**inherited, "LANG": "C.UTF-8", "AGENT_HEARTBEAT_SECONDS": "1"}


def run_arguments(out: Path, workloads: str, *extra: str) -> list[str]:
    """Return the arguments of `agent run` for the tiny profile, without the program."""
    return ["run", "--profile", "tiny", "--workloads", workloads, "--out", str(out), *extra]


def run_one_process(out: Path, workloads: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *run_arguments(out, workloads, *extra)], cwd=REPO,
                          env=environment(), capture_output=True, text=True, timeout=600)


# The fine-tuning workloads of the tiny profile that the launched fine-tuning tests compare with one
# process, and the max_steps that rule pack tiny-2026.1 fixes for each of them.
FINETUNE_WORKLOADS = ["sft-llama", "lora-llama"]
FINETUNE_MAX_STEPS = 8


def run_finetune_one_process(folder: Path) -> Path:
    """Run FINETUNE_WORKLOADS in one process into `folder`/run, decoding in batches of 3 as the launched runs do."""
    out = folder / "run"
    completed = run_one_process(out, ",".join(FINETUNE_WORKLOADS), "--set", "eval_batch_size=3")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


def launch_finetune(folder: Path, *extra: str, timeout: float) -> None:
    """Launch FINETUNE_WORKLOADS on two processes into `folder`/run, decoding in batches of 3, with the worker logs in `folder`/logs."""
    command = [*launcher_command(folder / "logs", "--nproc_per_node", "2"),
               *run_arguments(folder / "run", ",".join(FINETUNE_WORKLOADS), "--set", "eval_batch_size=3", *extra)]
    completed = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, launch_failure(completed, folder / "logs")


def launcher_command(logs: Path, *launcher_options: str) -> list[str]:
    """Return the launcher's command line up to the script; the agent's arguments follow it."""
    return [sys.executable, "-m", "paddle.distributed.launch", *launcher_options, "--log_dir", str(logs),
            "agent/__main__.py"]


def worker_logs(logs: Path, tail: int = 2000) -> str:
    """Return the end of every worker log in `logs`, for an assertion message."""
    return "".join(f"--- {path.name}\n" + path.read_text(errors="replace")[-tail:] for path in sorted(logs.glob("workerlog.*")))


def printed_values(log: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """Return the lines of a worker log that start with one of `keys` and a space, as {key: rest of the line}."""
    lines = (line.split(" ", 1) for line in log.read_text(errors="replace").splitlines())
    return {words[0]: words[1] for words in lines if len(words) == 2 and words[0] in keys}


def launch_failure(completed: subprocess.CompletedProcess, *log_folders: Path) -> str:
    """Describe a failed launch for an assertion message: what the exit code means, the launcher's output and the worker logs.

    Paddle 3.3's launcher exits with the first non-zero return code of its
    workers (`Pod.exit_code` in paddle/distributed/launch/job/pod.py). A worker
    killed by signal N has the return code -N, which the exit status turns
    into 256 - N: 250 is SIGABRT, 247 SIGKILL.
    """
    code = completed.returncode
    meaning = f"launcher exit code {code}"
    if 256 - code in {number.value for number in signal.Signals}:
        meaning += f": a worker returned {code}, or was killed by {signal.Signals(256 - code).name}"
    logs = "".join(worker_logs(folder, tail=4000) for folder in log_folders)
    return f"{meaning}\n--- launcher\n{(completed.stdout or '')[-3000:]}{(completed.stderr or '')[-3000:]}\n{logs}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that no process listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def losses(run: Path, workload: str) -> dict[int, float]:
    return {record["step"]: decode_float(record["loss"])
            for record in read_jsonl(run / "workloads" / workload / "steps.jsonl")}


def grad_norms(run: Path, workload: str) -> dict[int, float]:
    return {record["step"]: decode_float(record["grad_norm"])
            for record in read_jsonl(run / "workloads" / workload / "steps.jsonl")}


def wait_for_checkpoint(process: subprocess.Popen, events: Path, step: int, timeout: float = 240.0) -> None:
    """Wait until the run's `events.jsonl` records the checkpoint of `step`, failing if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before the checkpoint it was to be killed after"
        if events.is_file() and any(record["event"] == "checkpoint" and record["step"] == step for record in read_jsonl(events)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of step {step} within {timeout} s")


def kill_launcher(process: subprocess.Popen) -> None:
    """Kill the launcher and its worker processes with SIGKILL, as a power cut would, and reap the launcher.

    The workers are listed before the launcher dies, because afterwards they
    are no longer its children.
    """
    try:
        workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(process.pid)], capture_output=True, text=True).stdout.split()
        process.send_signal(signal.SIGKILL)
        for worker in workers:
            # A worker that already ended (a failed run) has nothing left to kill.
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(worker), signal.SIGKILL)
    finally:
        process.wait(timeout=60)


class ResumedRun(NamedTuple):
    """A run killed after a checkpoint and resumed: its folder, the steps recorded at the kill, and the checkpoint's files."""

    run: Path
    steps_at_kill: int
    checkpoint_files: list[str]


def kill_and_resume(folder: Path, launcher_options: tuple[str, ...], workload: str, *extra: str, step: int = 20,
                    timeout: float = 600.0) -> ResumedRun:
    """Launch `workload`, kill the launcher and its workers with SIGKILL after the checkpoint of `step`, and relaunch it with --resume.

    The run folder is `folder/run`, and the two launches log to `folder/logs`
    and `folder/logs-resume`. `checkpoint_files` lists the names of the files
    in the checkpoint folder of `step` at the kill, before the resumed run can
    rotate it away. `timeout` bounds the wait for the checkpoint and the
    resumed launch, each.
    """
    out = folder / "run"
    process = subprocess.Popen([*launcher_command(folder / "logs", *launcher_options), *run_arguments(out, workload, *extra)],
                               cwd=REPO, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_checkpoint(process, out / "events.jsonl", step, timeout)
    finally:
        kill_launcher(process)
    steps_at_kill = len(read_jsonl(out / "workloads" / workload / "steps.jsonl"))
    checkpoint = out / "checkpoints" / workload / f"checkpoint-{step}"
    checkpoint_files = sorted(path.name for path in checkpoint.iterdir() if path.is_file())

    resumed = subprocess.run([*launcher_command(folder / "logs-resume", *launcher_options),
                              *run_arguments(out, workload, *extra, "--resume")],
                             cwd=REPO, env=environment(), capture_output=True, text=True, timeout=timeout)
    assert resumed.returncode == 0, launch_failure(resumed, folder / "logs-resume")
    return ResumedRun(out, steps_at_kill, checkpoint_files)


def check_merged_model(run: Path, one_process: Path, workload: str, tolerance: float) -> dict:
    """Check that rank 0 merged run's `models/<workload>` into plain safetensors close to one process's weights.

    Assert that no part or per-rank file is left, that the tensor names
    match, and that each weight has one process's shape and differs from it
    by less than `tolerance`. Return the merged folder's config.
    """
    import numpy as np
    import paddle

    from agent.workloads.rank_merge import PARTS_FOLDER, iter_tensors

    folder = run / "models" / workload
    weights = dict(iter_tensors(folder))
    expected = paddle.load(str(one_process / "models" / workload / "model_state.pdparams"))

    assert not (folder / PARTS_FOLDER).exists()
    assert not list(folder.glob("model_state*"))
    assert sorted(weights) == sorted(expected)
    for name, value in expected.items():
        assert weights[name].shape == tuple(value.shape), name
        assert np.abs(weights[name] - value.numpy()).max() < tolerance, name
    return read_json(folder / "config.json")
