"""Input checks once per node: local rank 0 hashes the inputs, the other local ranks of the node use its result.

The processes are real: two agent processes started by this test with the
launcher's rank variables (the failure path), and two CPU processes under
`paddle.distributed.launch` training from a tiny checkpoint (the success
path). A small entry script points the agent at a rule pack and profile in
the test's folder.
"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from certification.records import read_json, read_jsonl
from certification.rulepack import load_rule_pack

from agent.runner import node_inputs
from tests.agent.test_checkpoints import save_tiny_model, sha256sum_digest

REPO = Path(__file__).resolve().parents[2]
HASHING = "checking the digest of"
ENTRY = """import sys
from pathlib import Path

import certification.rulepack
import agent.runner.profiles
from agent.cli import main

certification.rulepack.RULEPACK_DIR = Path(sys.argv[1])
agent.runner.profiles.PROFILE_DIR = Path(sys.argv[2])
sys.exit(main(sys.argv[3:]))
"""


def write_pack(folder: Path, checkpoint: Path, sha256: str) -> list[str]:
    """Write a 2-step pretrain-llama pack that starts from `checkpoint`, its profile and the entry script; return the command head."""
    data = copy.deepcopy(load_rule_pack("tiny-2026.1").data)
    data["id"] = "node"
    data["models"]["llama-tiny"]["checkpoint"] = {"path": os.path.relpath(checkpoint, REPO), "sha256": sha256}
    fixed = data["workloads"]["pretrain-llama"]["hyperparameters"]["fixed"]
    fixed.update(max_steps=2, warmup_steps=1)
    fixed.pop("checkpoint_steps")
    data["workloads"]["pretrain-llama"]["criteria"] = data["workloads"]["pretrain-llama"]["criteria"][:1]
    packs, profiles = folder / "packs", folder / "profiles"
    packs.mkdir()
    profiles.mkdir()
    (packs / "node-2026.1.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    profile = {"rule_pack": "node-2026.1", "tracks": ["pretraining"], "level": 1, "device": "cpu",
               "vendor": "Test Vendor", "card": {"model": "CPU", "serial": "1"}, "workloads": ["pretrain-llama"]}
    (profiles / "node.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    (folder / "entry.py").write_text(ENTRY, encoding="utf-8")
    return [str(folder / "entry.py"), str(packs), str(profiles), "run", "--profile", "node"]


def english() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C.UTF-8", "AGENT_HEARTBEAT_SECONDS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("node-checkpoint") / "llama"
    save_tiny_model(load_rule_pack("tiny-2026.1"), "llama-tiny", folder)
    return folder


def test_failed_check_stops_every_local_rank(checkpoint, tmp_path):
    head = [*write_pack(tmp_path, checkpoint, "0" * 64), "--set", "per_device_train_batch_size=2"]
    out = tmp_path / "run"
    ranks = {"PADDLE_TRAINERS_NUM": "2", "PADDLE_LOCAL_SIZE": "2"}
    # Rank 1 starts first, so it must wait for rank 0's result rather than find it.
    waiting = subprocess.Popen([sys.executable, *head, "--out", str(out)], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**english(), **ranks, "PADDLE_TRAINER_ID": "1", "PADDLE_LOCAL_RANK": "1"})
    hashing = subprocess.run([sys.executable, *head, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={**english(), **ranks, "PADDLE_TRAINER_ID": "0", "PADDLE_LOCAL_RANK": "0"})
    _, waited_log = waiting.communicate(timeout=120)

    error_line = next(line for line in hashing.stderr.splitlines() if line.startswith("error["))
    assert hashing.returncode == 2
    assert waiting.returncode == 2
    assert error_line.startswith("error[data_checksum_mismatch]: checkpoint of model llama-tiny")
    assert error_line in waited_log.splitlines()
    assert f"{HASHING} checkpoint of model llama-tiny" in hashing.stderr
    assert HASHING not in waited_log
    # Under load rank 0 may fail and end before rank 1 looks for it; rank 1 then reads the result it left.
    assert ("waiting for local rank 0 of this node" in waited_log
            or "checked the inputs and ended; reading its result" in waited_log)
    assert not out.exists()


def test_local_rank_zero_ended_without_result(tmp_path, monkeypatch):
    """A local rank 0 that exits without writing a result makes the waiting rank fail at once instead of waiting."""
    from agent.errors import AgentError

    monkeypatch.setattr(node_inputs, "RESULT_FOLDER", tmp_path / "results")
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"], env={**os.environ, "PADDLE_LOCAL_RANK": "0"})
    # This test process acts as the launcher: the leader is its child, as the waiting rank's siblings are the launcher's.
    launcher = os.getpid()
    monkeypatch.setattr(os, "getppid", lambda: launcher)

    with pytest.raises(AgentError) as error:
        node_inputs.verify_once_per_node(1, 2, lambda: pytest.fail("a waiting rank must not check the inputs itself"))
    leader.wait(timeout=10)

    assert error.value.code == "input_check_failed"
    assert f"process {leader.pid}" in error.value.message


@pytest.mark.slow
def test_launched_ranks_hash_once(checkpoint, tmp_path):
    head = write_pack(tmp_path, checkpoint, sha256sum_digest(checkpoint))
    logs, out = tmp_path / "logs", tmp_path / "run"
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(logs),
               *head, "--out", str(out), "--set", "per_device_train_batch_size=2"]

    completed = subprocess.run(command, cwd=REPO, env=english(), capture_output=True, text=True, timeout=600)

    hashed, waited = (logs / "workerlog.0").read_text(errors="replace"), (logs / "workerlog.1").read_text(errors="replace")
    assert completed.returncode == 0, hashed[-3000:] + waited[-3000:]
    assert f"{HASHING} checkpoint of model llama-tiny" in hashed
    assert f"{HASHING} tokenizer llama2" in hashed
    assert HASHING not in waited
    assert "checked the digest of every input file" in waited
    inputs = read_json(out / "run.json")["inputs"]
    assert inputs["checkpoint llama-tiny"]["sha256"] == sha256sum_digest(checkpoint)
    assert inputs["checkpoint llama-tiny"]["pinned"] is True
    # save_pretrained wrote float32 pdparams and no dtype into config.json, so the stored dtype is unknown.
    assert inputs["checkpoint llama-tiny"]["weights"]["files"] == ["model_state.pdparams"]
    assert inputs["checkpoint llama-tiny"]["weights"]["stored_dtypes"] == []
    assert inputs["checkpoint llama-tiny"]["weights"]["stored_dtypes_from"] is None
    steps = read_jsonl(out / "workloads" / "pretrain-llama" / "steps.jsonl")
    assert [record["cards"] for record in steps] == [2, 2]


def test_stale_results_removed(tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(node_inputs, "RESULT_FOLDER", tmp_path)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f"inputs-{socket.gethostname()}-{ended.stdout.strip()}-1.json"
    stale.write_text("{}")
    own = node_inputs.result_path(os.getpid())
    own.write_text("{}")

    node_inputs.remove_stale_results()

    assert not stale.exists()
    assert own.exists()


def test_result_folder_of_another_user_rejected(tmp_path, monkeypatch):
    from agent.errors import AgentError

    folder = tmp_path / "results"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    monkeypatch.setattr(node_inputs, "RESULT_FOLDER", folder)

    with pytest.raises(AgentError) as error:
        node_inputs.verify_once_per_node(0, 2, lambda: pytest.fail("inputs must not be checked into a folder others can write"))

    assert error.value.code == "input_check_failed"
    assert str(folder) in error.value.message


def ended_process() -> tuple[int, int]:
    """Start a child of this process, read its start time while it runs, and return (pid, start ticks) once it has ended."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    started = node_inputs.process_start_ticks(child.pid)
    child.communicate(b"", timeout=60)
    return child.pid, started


@pytest.mark.parametrize("case", ["sibling", "other launcher", "started long before"])
def test_ended_sibling_result(tmp_path, monkeypatch, case):
    import json
    import socket

    # This test process acts as the launcher of the ended child and of a sibling that starts a second after it.
    monkeypatch.setattr(node_inputs, "RESULT_FOLDER", tmp_path)
    pid, started = ended_process()
    launcher = [os.getpid(), node_inputs.process_start_ticks(os.getpid())]
    if case == "other launcher":
        launcher[1] += 1
    own_start = started + os.sysconf("SC_CLK_TCK") * (60 if case == "started long before" else 1)
    result = tmp_path / f"inputs-{socket.gethostname()}-{pid}-{started}.json"
    result.write_text(json.dumps({"launcher": launcher, "records": {}}))

    found = node_inputs.ended_sibling_result(os.getpid(), own_start)

    assert found == (result if case == "sibling" else None)
