"""Tiny LLaMA pretraining on two nodes of one CPU process each, both on this machine, against one process.

Two `paddle.distributed.launch` launchers meet at a master on 127.0.0.1
(`--nnodes 2`, node ranks 0 and 1, `--host 127.0.0.1`), and both workers
write to the same `--out`, as nodes sharing a file system do.
"""

import subprocess

import pytest

from certification.records import read_json, read_jsonl

from tests.agent.launching import (
    REPO,
    environment,
    free_port,
    launcher_command,
    losses,
    run_arguments,
    run_one_process,
    worker_logs,
)

WORKLOAD = "pretrain-llama"
MAX_STEPS = 40

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("nodes-one") / "run"
    completed = run_one_process(out, WORKLOAD)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nodes")
    master = f"127.0.0.1:{free_port()}"
    launchers = []
    for node in (0, 1):
        command = [*launcher_command(folder / f"logs-node{node}", "--master", master, "--nnodes", "2", "--rank", str(node),
                                     "--nproc_per_node", "1", "--host", "127.0.0.1", "--job_id", "two-nodes"),
                   *run_arguments(folder / "run", WORKLOAD, "--set", "per_device_train_batch_size=2")]
        launchers.append(subprocess.Popen(command, cwd=REPO, env=environment(),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        codes = [launcher.wait(timeout=600) for launcher in launchers]
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
    logs = worker_logs(folder / "logs-node0") + worker_logs(folder / "logs-node1")
    assert codes == [0, 0], logs
    return folder


def test_two_nodes_match_one_process(two_nodes, one_process):
    two, one = losses(two_nodes / "run", WORKLOAD), losses(one_process, WORKLOAD)

    assert sorted(two) == list(range(1, MAX_STEPS + 1))
    assert two == pytest.approx(one, rel=1e-5)


def test_two_nodes_recorded(two_nodes):
    environment_record = read_json(two_nodes / "run" / "environment.json")
    records = read_jsonl(two_nodes / "run" / "workloads" / WORKLOAD / "steps.jsonl")
    trainer = read_json(two_nodes / "run" / "workloads" / WORKLOAD / "config.json")["trainer"]

    assert environment_record["nodes"] == 2
    assert environment_record["device"]["processes"] == 2
    assert all(record["cards"] == 2 for record in records)
    assert (trainer["world_size"], trainer["data_parallel_ranks"]) == (2, 2)


def test_two_nodes_one_writer(two_nodes):
    events = [event["event"] for event in read_jsonl(two_nodes / "run" / "events.jsonl")]
    checkpoints = sorted(path.name for path in (two_nodes / "run" / "checkpoints" / WORKLOAD).iterdir())

    assert events.count("start") == 1
    assert events.count("stop") == 1
    assert events.count("workload_end") == 1
    assert checkpoints == [f"checkpoint-{step}" for step in (10, 20, 30, 40)]
    assert read_json(two_nodes / "run" / "workloads" / WORKLOAD / "result.json")["status"] == "completed"


def test_each_node_ran_one_rank(two_nodes):
    for node in (0, 1):
        backup = read_json(two_nodes / f"logs-node{node}" / f"backup_env.{node}.json")

        assert backup["PADDLE_TRAINER_ID"] == str(node)
        assert backup["PADDLE_NNODES"] == "2"
