"""The run-folder lock, held by real processes: a second run on a busy folder is rejected before it writes or hashes."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import sys
from pathlib import Path

import pytest

from agent.errors import EXIT_USAGE, AgentError
from agent.runner import RunRequest, start_run
from agent.runner.folder import check_new_run_folder
from agent.runner.lock import LOCK_NAME, lock_follower, lock_leader, read_records
from certification.bundle import list_run_files
from certification.records import read_jsonl

from tests.agent.launching import environment, launcher_command, run_arguments, wait_for_checkpoint

REPO = Path(__file__).resolve().parents[2]

def busy_error(action) -> AgentError:
    with pytest.raises(AgentError) as error:
        action()
    assert error.value.code == "run_folder_busy"
    return error.value


def test_second_leader_rejected(tmp_path, lock_holders):
    holder = lock_holders(tmp_path, 0)

    error = busy_error(lambda: lock_leader(tmp_path, launched=False))

    assert f"process {holder.pid} on " in error.message
    assert str(tmp_path) in error.message
    assert "stop" in error.hint


def test_orphaned_worker_keeps_lock(tmp_path, lock_holders):
    leader = lock_holders(tmp_path, 0)
    worker = lock_holders(tmp_path, 1)
    leader.send_signal(signal.SIGKILL)
    leader.wait(timeout=30)

    error = busy_error(lambda: lock_leader(tmp_path, launched=False))

    # The dead leader is left out of the message, so the user stops the process that still runs.
    assert f"process {worker.pid} on " in error.message
    assert f"process {leader.pid} on " not in error.message


def test_lock_free_after_holders_end(tmp_path, lock_holders):
    leader = lock_holders(tmp_path, 0)
    worker = lock_holders(tmp_path, 1)
    for process in (leader, worker):
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    lock = lock_leader(tmp_path, launched=False)
    try:
        assert [record["pid"] for record in read_records(tmp_path)] == [os.getpid()]
    finally:
        lock.release()


def test_worker_waits_for_own_job(tmp_path, lock_holders, monkeypatch):
    # An orphaned leader of another launch holds the folder, so this job's rank 1 must not join its lock.
    lock_holders(tmp_path, 0, job="127.0.0.1:7000,127.0.0.1:7001")
    monkeypatch.setenv("PADDLE_TRAINER_ENDPOINTS", "127.0.0.1:8000,127.0.0.1:8001")

    error = busy_error(lambda: lock_follower(tmp_path, 1, timeout=1.0))

    assert "rank 0" in error.message


def test_worker_creates_no_lock_file(tmp_path, monkeypatch):
    # Rank 0 rejected this folder (it holds another user's file), so it never created the lock file.
    (tmp_path / "notes.txt").write_text("not a run", encoding="utf-8")
    monkeypatch.setenv("PADDLE_TRAINER_ENDPOINTS", "127.0.0.1:8000,127.0.0.1:8001")

    busy_error(lambda: lock_follower(tmp_path, 1, timeout=0.5))

    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_worker_out_path_is_file(tmp_path, monkeypatch):
    (tmp_path / "run").write_text("a file", encoding="utf-8")
    monkeypatch.setenv("PADDLE_TRAINER_ENDPOINTS", "127.0.0.1:8000,127.0.0.1:8001")

    busy_error(lambda: lock_follower(tmp_path / "run", 1, timeout=0.5))


def test_worker_wait_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_TRAINER_ENDPOINTS", "127.0.0.1:8000,127.0.0.1:8001")
    monkeypatch.setenv("AGENT_LOCK_WAIT_SECONDS", "1.5")
    started = time.monotonic()

    error = busy_error(lambda: lock_follower(tmp_path, 1))

    assert time.monotonic() - started < 30
    assert "within 2 s" in error.message
    assert "AGENT_LOCK_WAIT_SECONDS" in error.hint


@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf", "nan"])
def test_worker_wait_setting_invalid(tmp_path, monkeypatch, value):
    monkeypatch.setenv("AGENT_LOCK_WAIT_SECONDS", value)

    with pytest.raises(AgentError) as raised:
        lock_follower(tmp_path, 1)

    assert raised.value.code == "setting_invalid"
    assert f"AGENT_LOCK_WAIT_SECONDS={value!r}" in raised.value.message


def test_new_run_check_rejects_busy_folder(tmp_path, lock_holders):
    (tmp_path / "run").mkdir()
    holder = lock_holders(tmp_path / "run", 0)

    error = busy_error(lambda: check_new_run_folder(tmp_path / "run"))

    assert str(holder.pid) in error.message


def test_resume_rejected_while_run_holds_folder(tmp_path, lock_holders):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"run_id": "other", "profile": "smoke"}), encoding="utf-8")
    holder = lock_holders(out, 0)
    # A data root without the data: the busy folder must be reported before any input is read.
    request = RunRequest(profile="smoke", out=out, resume=True, data_root=tmp_path)

    error = busy_error(lambda: start_run(request))

    assert str(holder.pid) in error.message
    assert {path.name for path in out.iterdir()} == {LOCK_NAME, "run.json"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only folder")
def test_read_only_folder_rejected(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(AgentError) as error:
            lock_leader(tmp_path, launched=False)
    finally:
        tmp_path.chmod(0o755)

    assert error.value.code == "run_folder_not_writable"
    assert LOCK_NAME in error.value.message


def test_run_lock_not_bundled(tmp_path):
    (tmp_path / "run.json").write_text("{}", encoding="utf-8")
    (tmp_path / LOCK_NAME).write_text("{}\n", encoding="utf-8")

    assert list_run_files(tmp_path) == ["run.json"]


def test_not_empty_rejected_before_hashing(tmp_path):
    # The tokenizer is altered, so hashing first would raise data_checksum_mismatch instead.
    shutil.copytree(REPO / "data", tmp_path / "data")
    tokenizer = tmp_path / "data" / "tokenizers" / "llama2_tokenizer.model"
    tokenizer.write_bytes(tokenizer.read_bytes()[:-1])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("not a run\n", encoding="utf-8")
    request = RunRequest(profile="smoke", out=tmp_path / "run", resume=False, data_root=tmp_path)

    with pytest.raises(AgentError) as error:
        start_run(request)

    assert error.value.code == "run_folder_not_empty"


def test_lock_file_alone_counts_as_empty(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).write_text("", encoding="utf-8")

    check_new_run_folder(tmp_path / "run")


# Real runs of tiny pretraining: a second `agent run --resume` on the folder of a run that still trains.


def agent_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "agent", "run", "--profile", "tiny", "--workloads", "pretrain-llama", "--out", str(out), *extra]


def event_names(out: Path) -> list[str]:
    return [record["event"] for record in read_jsonl(out / "events.jsonl") if record["event"] != "heartbeat"]


@pytest.mark.slow
def test_resume_of_running_run_rejected(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(agent_command(out), cwd=REPO, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_checkpoint(first, out / "events.jsonl", 10)
        steps_before = (out / "workloads" / "pretrain-llama" / "steps.jsonl").read_bytes()
        second = subprocess.run(agent_command(out, "--resume"), cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)

    assert second.returncode == EXIT_USAGE, second.stderr[-3000:]
    assert "error[run_folder_busy]" in second.stderr
    assert f"process {first.pid} on " in second.stderr
    steps_after = (out / "workloads" / "pretrain-llama" / "steps.jsonl").read_bytes()
    assert steps_after.startswith(steps_before)
    names = event_names(out)
    assert names.count("start") == 1
    assert "resume" not in names
    assert "crash" not in names
    assert read_jsonl(out / "events.jsonl")[-1]["reason"] == "terminated"


@pytest.mark.slow
def test_orphaned_launched_workers_keep_folder(tmp_path):
    out, logs = tmp_path / "run", tmp_path / "logs"
    command = [*launcher_command(logs, "--nproc_per_node", "2"), *run_arguments(out, "pretrain-llama", "--set", "per_device_train_batch_size=2")]
    launcher = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        wait_for_checkpoint(launcher, out / "events.jsonl", 10)
        workers = [record["pid"] for record in read_records(out)]
        launcher.send_signal(signal.SIGKILL)  # the workers run on, in their own sessions
        launcher.wait(timeout=60)
        resumed = subprocess.run(agent_command(out, "--resume"), cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=60)

    assert sorted(record["rank"] for record in read_records(out)) == [0, 1]
    assert resumed.returncode == EXIT_USAGE, resumed.stderr[-3000:]
    assert "error[run_folder_busy]" in resumed.stderr
    assert all(f"process {pid} on " in resumed.stderr for pid in workers)
    assert "resume" not in event_names(out)
