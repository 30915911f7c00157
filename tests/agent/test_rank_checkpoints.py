"""Released checkpoints made of per-rank tensor-parallel weight files (`model_state.tp00.pdparams`, `model.tp00.safetensors`).

The fast tests check folders of such files against the rules in
agent.runner.weights. The slow tests split a saved tiny LLaMA over two
launched tensor-parallel ranks by PaddleNLP's rules and save each rank's part
with save_pretrained. Two ranks that train from that folder must give the
losses of a one-process run from the plain folder.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from certification.records import decode_float, read_json, read_jsonl
from certification.rulepack import load_rule_pack

from agent.errors import EXIT_USAGE, AgentError
from agent.runner.checkpoints import check_checkpoint_degrees, verify_checkpoint
from agent.runner.plan import verify_input_files
from agent.runner.weights import check_tensor_parallel_degree

from tests.agent.launching import environment, launch_failure
from tests.agent.test_checkpoints import (checkpoint_pack, fake_checkpoint, make_pack, safetensors_bytes, save_tiny_model,
                                          sha256sum_digest, tiny_data)

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = "pretrain-llama"
STEPS = 3


def rank_folder(folder: Path, names: list[str], config: dict | None = None) -> Path:
    """A checkpoint folder with config.json and the named weight files, each a small valid safetensors file."""
    fake_checkpoint(folder, config, weights=None)
    for name in names:
        (folder / name).write_bytes(safetensors_bytes())
    return folder


def write_index(folder: Path, name: str, shards: list[str]) -> None:
    (folder / name).write_text(json.dumps({"metadata": {}, "weight_map": {f"p{i}": shard for i, shard in enumerate(shards)}}))


def sharded_ranks(folder: Path, config: dict | None = None) -> Path:
    """Two ranks, each saved as a per-rank safetensors index over two shards."""
    rank_folder(folder, [f"model.tp{rank:02d}-0000{shard}-of-00002.safetensors" for rank in (0, 1) for shard in (1, 2)], config)
    for rank in (0, 1):
        write_index(folder, f"model.safetensors.index.tp{rank:02d}.json",
                    [f"model.tp{rank:02d}-0000{shard}-of-00002.safetensors" for shard in (1, 2)])
    return folder


def verify(folder: Path) -> dict:
    return verify_input_files(checkpoint_pack(folder, None), [WORKLOAD], REPO)["checkpoint llama-tiny"]


LLAMA = {"architectures": ["LlamaForCausalLM"], "vocab_size": 32000}


@pytest.mark.parametrize("names", [["model_state.tp00.pdparams", "model_state.tp01.pdparams"],
                                   ["model.tp00.safetensors", "model.tp01.safetensors", "model.tp02.safetensors"]])
def test_rank_files_verified(names, tmp_path):
    folder = rank_folder(tmp_path / "ckpt", names, {**LLAMA, "tensor_parallel_degree": len(names)})

    record = verify(folder)

    assert record["weights"]["files"] == names
    assert record["weights"]["tensor_parallel_degree"] == len(names)
    assert record["weights"]["rank_indexes"] == []
    # The digest covers config.json and every rank's file.
    assert [entry["path"] for entry in record["files"]] == sorted(["config.json", *names])
    assert record["sha256"] == sha256sum_digest(folder)


def test_rank_indexes_verified(tmp_path):
    folder = sharded_ranks(tmp_path / "ckpt")

    record = verify(folder)

    assert record["weights"]["rank_indexes"] == ["model.safetensors.index.tp00.json", "model.safetensors.index.tp01.json"]
    assert record["weights"]["files"] == [f"model.tp{rank:02d}-0000{shard}-of-00002.safetensors" for rank in (0, 1) for shard in (1, 2)]
    assert record["weights"]["tensor_parallel_degree"] == 2
    assert record["weights"]["stored_dtypes"] == ["bfloat16"]
    assert len(record["files"]) == 7
    assert record["sha256"] == sha256sum_digest(folder)


def test_rank_file_change_changes_digest(tmp_path):
    folder = rank_folder(tmp_path / "ckpt", ["model_state.tp00.pdparams", "model_state.tp01.pdparams"])
    pinned = sha256sum_digest(folder)
    pack = checkpoint_pack(folder, pinned)
    assert verify_input_files(pack, [WORKLOAD], REPO)["checkpoint llama-tiny"]["sha256"] == pinned

    (folder / "model_state.tp01.pdparams").write_bytes(b"another rank's weights")
    with pytest.raises(AgentError) as error:
        verify_input_files(pack, [WORKLOAD], REPO)

    assert error.value.code == "data_checksum_mismatch"
    assert pinned in error.value.message


def shard(rank: int, number: int) -> str:
    return f"model.tp{rank:02d}-0000{number}-of-00002.safetensors"


BAD_FOLDERS = [
    # A gap: rank 1 is missing.
    (lambda folder: rank_folder(folder, ["model.tp00.safetensors", "model.tp02.safetensors"]), "checkpoint_incomplete", "model.tp01.safetensors"),
    # One rank alone: a tensor-parallel save has two ranks at least.
    (lambda folder: rank_folder(folder, ["model_state.tp00.pdparams"]), "checkpoint_incomplete", "model_state.tp01.pdparams"),
    (lambda folder: rank_folder(folder, ["model.tp00.safetensors", "model.tp01.safetensors", "model_state.tp00.pdparams",
                                         "model_state.tp01.pdparams"]), "checkpoint_mixed_weights", "model_state.tp00.pdparams"),
    (lambda folder: rank_folder(folder, ["model.safetensors", "model.tp00.safetensors", "model.tp01.safetensors"]),
     "checkpoint_mixed_weights", "model.safetensors"),
    (lambda folder: rank_folder(folder, ["model_state-00001-of-00002.pdparams", "model.tp00.safetensors", "model.tp01.safetensors"]),
     "checkpoint_mixed_weights", "model_state-00001-of-00002.pdparams"),
    (lambda folder: (sharded_ranks(folder), (folder / "model.tp00.safetensors").write_bytes(safetensors_bytes())),
     "checkpoint_mixed_weights", "2 layouts"),
    (lambda folder: rank_folder(folder, ["model.tp00.safetensors", "model.tp01.safetensors"], {**LLAMA, "tensor_parallel_degree": 4}),
     "checkpoint_config_mismatch", "tensor_parallel_degree=4"),
    (lambda folder: rank_folder(folder, ["model.tp00.safetensors", "model.tp01.safetensors"], {**LLAMA, "tensor_parallel_degree": 1}),
     "checkpoint_config_mismatch", "2 tensor-parallel ranks"),
    (lambda folder: rank_folder(folder, ["model.tp00.safetensors", "model.tp01.safetensors", shard(0, 1)]),
     "checkpoint_stray_weights", shard(0, 1)),
    (lambda folder: (sharded_ranks(folder), (folder / "model.tp01-00003-of-00003.safetensors").write_bytes(safetensors_bytes())),
     "checkpoint_stray_weights", "model.tp01-00003-of-00003.safetensors"),
    (lambda folder: (sharded_ranks(folder), (folder / shard(1, 2)).unlink()), "checkpoint_incomplete", shard(1, 2)),
    (lambda folder: (sharded_ranks(folder), write_index(folder, "model.safetensors.index.tp01.json", [shard(1, 1), shard(0, 2)])),
     "checkpoint_index_invalid", shard(0, 2)),
    (lambda folder: rank_folder(folder, [shard(0, 1), shard(1, 1)]), "checkpoint_incomplete", "no per-rank index"),
    # Per-stage files, as save_pretrained writes them under pipeline parallelism, with and without tensor parallelism.
    (lambda folder: rank_folder(folder, [f"model_state.tp{rank:02d}_pp{stage:02d}.pdparams" for rank in (0, 1) for stage in (0, 1)]),
     "checkpoint_stage_weights", "model_state.tp00_pp01.pdparams"),
    (lambda folder: rank_folder(folder, ["model.pp00.safetensors", "model.pp01.safetensors"]), "checkpoint_stage_weights",
     "model.pp00.safetensors, model.pp01.safetensors"),
    (lambda folder: rank_folder(folder, ["model.tp00_pp00-00001-of-00002.safetensors"]), "checkpoint_stage_weights",
     "model.tp00_pp00-00001-of-00002.safetensors"),
]


@pytest.mark.parametrize(("prepare", "code", "named"), BAD_FOLDERS)
def test_bad_rank_files_rejected(tmp_path, prepare, code, named):
    folder = tmp_path / "ckpt"
    prepare(folder)

    with pytest.raises(AgentError) as error:
        verify(folder)

    assert error.value.code == code
    assert named in error.value.message
    # The pack names the folder relative to the data root (the repository), and the message shows that path.
    assert str(REPO / os.path.relpath(folder, REPO)) in error.value.message
    assert error.value.hint


def test_rank_count_must_match_run_degree():
    weights = {"files": ["model_state.tp00.pdparams", "model_state.tp01.pdparams"], "tensor_parallel_degree": 2}

    check_tensor_parallel_degree(weights, "/ckpt", 2)
    # A checkpoint of the whole model loads under any degree.
    check_tensor_parallel_degree({"files": ["model_state.pdparams"], "index": None}, "/ckpt", 4)
    for degree in (1, 4):
        with pytest.raises(AgentError) as error:
            check_tensor_parallel_degree(weights, "/ckpt", degree)
        assert error.value.code == "checkpoint_parallel_mismatch"
        assert f"tensor_parallel_degree 2, but this run has tensor_parallel_degree {degree}" in error.value.message
        assert "tensor_parallel_degree=2" in error.value.hint


def test_rank_files_rejected_in_stages():
    weights = {"files": ["model_state.tp00.pdparams", "model_state.tp01.pdparams"], "tensor_parallel_degree": 2}

    # A checkpoint of the whole model loads into pipeline stages.
    check_tensor_parallel_degree({"files": ["model_state.pdparams"], "index": None}, "/ckpt", 2, 2)
    with pytest.raises(AgentError) as error:
        check_tensor_parallel_degree(weights, "/ckpt", 2, 2)

    assert error.value.code == "checkpoint_parallel_mismatch"
    assert "tensor_parallel_degree 2, which PaddleNLP does not load under pipeline_parallel_degree 2" in error.value.message
    assert "--set pipeline_parallel_degree=1" in error.value.hint


def test_run_stages_checked_before_start(tmp_path):
    folder = rank_folder(tmp_path / "ckpt", ["model.tp00.safetensors", "model.tp01.safetensors"])
    pack = checkpoint_pack(folder, None)

    with pytest.raises(AgentError) as error:
        check_checkpoint_degrees(pack, [WORKLOAD], REPO, {}, {"tensor_parallel_degree": 2, "pipeline_parallel_degree": 2})

    assert error.value.code == "checkpoint_parallel_mismatch"
    assert f"{WORKLOAD}: checkpoint of model llama-tiny at" in error.value.message
    assert "which PaddleNLP does not load under pipeline_parallel_degree 2" in error.value.message
    assert "--set pipeline_parallel_degree=1" in error.value.hint
    assert "--checkpoint llama-tiny=DIR" in error.value.hint


def test_run_degree_checked_before_start(tmp_path):
    folder = rank_folder(tmp_path / "ckpt", ["model.tp00.safetensors", "model.tp01.safetensors"])
    pack = checkpoint_pack(folder, None)

    check_checkpoint_degrees(pack, [WORKLOAD], REPO, {}, {"tensor_parallel_degree": 2})
    # Workloads that start from the trained model, not from the checkpoint, are not checked.
    check_checkpoint_degrees(pack, ["sft-llama"], REPO, {}, {})
    for overrides, degree in (({}, 1), ({"tensor_parallel_degree": 4}, 4)):
        with pytest.raises(AgentError) as error:
            check_checkpoint_degrees(pack, [WORKLOAD], REPO, {}, overrides)
        assert error.value.code == "checkpoint_parallel_mismatch"
        assert f"{WORKLOAD}: checkpoint of model llama-tiny at {REPO / os.path.relpath(folder, REPO)}" in error.value.message
        assert f"per-rank files of tensor_parallel_degree 2, but the workload loads it with tensor_parallel_degree {degree}" in error.value.message
        assert "--set tensor_parallel_degree=2" in error.value.hint
        assert "--checkpoint llama-tiny=DIR" in error.value.hint


def test_run_degree_check_without_free_degree(tmp_path):
    # A workload whose degree --set cannot change loads the checkpoint in one process, so only a merged folder fits.
    folder = rank_folder(tmp_path / "ckpt", ["model.tp00.safetensors", "model.tp01.safetensors"])
    data = checkpoint_pack(folder, None).data
    del data["workloads"][WORKLOAD]["hyperparameters"]["free"]["tensor_parallel_degree"]
    pack = make_pack(data)

    with pytest.raises(AgentError) as error:
        check_checkpoint_degrees(pack, [WORKLOAD], REPO, {"llama-tiny": folder}, {})

    assert "tensor_parallel_degree 2, but the workload loads it with tensor_parallel_degree 1" in error.value.message
    assert "--set" not in error.value.hint
    assert "--checkpoint llama-tiny=DIR" in error.value.hint


def test_run_command_rejects_rank_files_early(tmp_path, monkeypatch, capsys):
    # The run is rejected before it makes its folder.
    import certification.rulepack
    import agent.runner.profiles
    from agent.cli import main

    folder = rank_folder(tmp_path / "ckpt", ["model_state.tp00.pdparams", "model_state.tp01.pdparams"])
    monkeypatch.setattr(certification.rulepack, "RULEPACK_DIR", write_ranked_pack(tmp_path / "packs"))
    monkeypatch.setattr(agent.runner.profiles, "PROFILE_DIR", write_ranked_profile(tmp_path / "profiles"))
    out = tmp_path / "run"

    code = main(["--lang", "en", "run", "--profile", "ranked", "--out", str(out), "--checkpoint", f"llama-tiny={folder}"])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[checkpoint_parallel_mismatch]" in error
    assert f"checkpoint of model llama-tiny at {folder} is saved as per-rank files of tensor_parallel_degree 2" in error
    assert not out.exists()


# Per-rank files saved by two launched ranks, and training from them --------------------------

# Each rank loads the plain folder, which from_pretrained splits by PaddleNLP's rules for LLaMA, and saves its part.
SPLIT_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from paddlenlp.trainer import TrainingArguments
from certification.rulepack import load_rule_pack
from agent.workloads import models
from agent.workloads.training import parallel_model_settings

args = TrainingArguments(output_dir=sys.argv[3], device="cpu", tensor_parallel_degree=2, per_device_train_batch_size=4,
                         report_to=["none"])
preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]
config = models.model_config(preset, {}, "cpu")
split = models.load_checkpoint(preset, {"path": sys.argv[2]}, config, "float32", parallel_model_settings(args))
for folder, safe in ((sys.argv[3], False), (sys.argv[4], True)):
    split.save_pretrained(folder, merge_tensor_parallel=False, safe_serialization=safe,
                          is_main_process=args.tensor_parallel_rank == 0)
print("SAVED", args.tensor_parallel_rank)
"""

# `agent run` with the test's rule pack and profile folders, for a process that the launcher starts.
RUN_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import certification.rulepack, agent.runner.profiles
certification.rulepack.RULEPACK_DIR = Path(sys.argv[2])
agent.runner.profiles.PROFILE_DIR = Path(sys.argv[3])
from agent.cli import main
sys.exit(main(sys.argv[4:]))
"""


def run_command(command: list[str], logs: Path | None = None) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, launch_failure(completed, *([logs] if logs else []))
    return completed


def launch(logs: Path, script: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(logs), str(script), *arguments]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The plain tiny LLaMA folder and its parts saved per rank by two launched ranks, as pdparams and as safetensors."""
    folder = tmp_path_factory.mktemp("rank-files")
    save_tiny_model(load_rule_pack("tiny-2026.1"), "llama-tiny", folder / "plain")
    (folder / "split.py").write_text(SPLIT_SCRIPT)
    run_command(launch(folder / "logs", folder / "split.py", str(REPO), str(folder / "plain"), str(folder / "pdparams"),
                       str(folder / "safetensors")), folder / "logs")
    return folder


def write_ranked_pack(packs: Path) -> Path:
    """Write rule pack ranked-2026.1 into `packs`: llama-tiny with a checkpoint and a short pretrain-llama."""
    data = tiny_data()
    data["id"] = "ranked"
    data["models"]["llama-tiny"]["checkpoint"] = {"path": "absent/llama", "sha256": None}
    fixed = data["workloads"][WORKLOAD]["hyperparameters"]["fixed"]
    fixed.update(max_steps=STEPS, warmup_steps=1)
    fixed.pop("checkpoint_steps")
    data["workloads"][WORKLOAD]["criteria"] = data["workloads"][WORKLOAD]["criteria"][:1]
    packs.mkdir()
    (packs / "ranked-2026.1.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return packs


def write_ranked_profile(profiles: Path) -> Path:
    """Write profile ranked into `profiles`: pack ranked-2026.1, only pretrain-llama."""
    profile = {"rule_pack": "ranked-2026.1", "tracks": ["pretraining"], "level": 1, "device": "cpu",
               "vendor": "Test Vendor", "card": {"model": "CPU", "serial": "1"}, "workloads": [WORKLOAD]}
    profiles.mkdir()
    (profiles / "ranked.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    return profiles


@pytest.fixture(scope="module")
def agent_folders(saved):
    """A rule pack with llama-tiny's checkpoint and a short pretrain-llama, and a profile that runs only that workload."""
    packs, profiles = write_ranked_pack(saved / "packs"), write_ranked_profile(saved / "profiles")
    (saved / "run.py").write_text(RUN_SCRIPT)
    return [str(REPO), str(packs), str(profiles)]


def agent_run(saved: Path, agent_folders: list[str], out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [str(saved / "run.py"), *agent_folders, "run", "--profile", "ranked", "--out", str(out),
            "--checkpoint", f"llama-tiny={checkpoint}", *extra]


def losses(run: Path) -> list[float]:
    return [decode_float(record["loss"]) for record in read_jsonl(run / "workloads" / WORKLOAD / "steps.jsonl")]


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "names"), [("pdparams", ["model_state.tp00.pdparams", "model_state.tp01.pdparams"]),
                                               ("safetensors", ["model.tp00.safetensors", "model.tp01.safetensors"])])
def test_saved_rank_files_verified(saved, layout, names):
    folder = saved / layout
    pack = checkpoint_pack(folder, sha256sum_digest(folder))

    record = verify_checkpoint(pack, "llama-tiny", folder)

    assert sorted(path.name for path in folder.glob("model*")) == names
    assert record["weights"]["files"] == names
    assert record["weights"]["tensor_parallel_degree"] == 2
    assert record["config"]["tensor_parallel_degree"] == 2
    assert record["pinned"] is True
    assert {entry["path"] for entry in record["files"]} >= {"config.json", *names}


@pytest.fixture(scope="module")
def one_process(saved, agent_folders):
    """A one-process run from the plain folder."""
    run_command([sys.executable, *agent_run(saved, agent_folders, saved / "one", saved / "plain")])
    return saved / "one"


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "names"), [("pdparams", ["model_state.tp00.pdparams", "model_state.tp01.pdparams"]),
                                               ("safetensors", ["model.tp00.safetensors", "model.tp01.safetensors"])])
def test_two_ranks_start_from_rank_files(saved, agent_folders, one_process, layout, names):
    two, logs = saved / f"two-{layout}", saved / f"logs-{layout}"
    run_command(launch(logs, *agent_run(saved, agent_folders, two, saved / layout, "--set", "tensor_parallel_degree=2")), logs)

    assert len(losses(one_process)) == STEPS
    # The same weights give the same first loss; the row-parallel sums of two ranks round differently from one process.
    assert losses(two) == pytest.approx(losses(one_process), rel=1e-5)
    checkpoint = read_json(two / "workloads" / WORKLOAD / "config.json")["model"]["checkpoint"]
    assert checkpoint["weight_files"] == names
    assert checkpoint["sha256"] == sha256sum_digest(saved / layout)
    assert read_json(two / "run.json")["inputs"]["checkpoint llama-tiny"]["sha256"] == sha256sum_digest(saved / layout)


@pytest.mark.slow
def test_one_process_rejects_rank_files(saved, agent_folders):
    out = saved / "rejected"
    completed = subprocess.run([sys.executable, *agent_run(saved, agent_folders, out, saved / "safetensors")], cwd=REPO,
                               env=environment(), capture_output=True, text=True, timeout=600)

    assert completed.returncode == EXIT_USAGE, completed.stderr[-3000:]
    assert "error[checkpoint_parallel_mismatch]" in completed.stderr
    assert "tensor_parallel_degree 2, but the workload loads it with tensor_parallel_degree 1" in completed.stderr
    assert not out.exists()
