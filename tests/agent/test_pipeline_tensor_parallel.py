"""Pipeline plus tensor parallelism: the gloo group fix, and tiny LLaMA on four CPU processes as 2 stages x 2 ranks.

Paddle 3.3.1 cannot set up the gloo groups of four processes with tensor
and pipeline degree 2, because the groups' rendezvous keys collide in the
shared store; agent/workloads/patches.py gives each gloo group a store of
its own. The four-process run must give the one-process run's loss curve,
evaluate on its stages and ranks, save one plain model that rank 0
merges from every stage's and rank's part, and resume from its per-stage,
per-rank checkpoint. A saved tiny LLaMA loaded into the four processes
must give the plain model's loss.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from certification.records import decode_float, read_json, read_jsonl

from tests.agent.launching import (check_merged_model, environment, grad_norms, kill_and_resume, launch_failure, launcher_command, losses,
                                   printed_values, run_arguments, run_one_process)

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = "pretrain-llama"
BOTH = ("--set", "tensor_parallel_degree=2", "--set", "pipeline_parallel_degree=2", "--set", "per_device_train_batch_size=2")
FOUR_PROCESSES = ("--nproc_per_node", "4")
GROUPS_SCRIPT = REPO / "tests" / "agent" / "hybrid_groups.py"


def test_cause_gloo_group_keys_shared():
    # The fault the fix works around: a gloo group's rendezvous writes the unprefixed key "0" to its store.
    from agent.workloads import patches

    assert patches._gloo_group_keys_shared()


def test_gloo_group_fix_where_fault_shows(monkeypatch):
    import paddle.distributed.collective as collective

    from agent.workloads import patches

    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "4")
    applied = patches.apply()

    assert ("gloo_group_store" in applied) == patches._gloo_group_keys_shared()
    if "gloo_group_store" in applied:
        assert collective._new_process_group_impl.__qualname__.startswith("gloo_group_store")


@pytest.mark.parametrize(("processes", "probed"), [(None, False), ("1", False), ("2", True)])
def test_gloo_probe_only_for_several_processes(processes, probed):
    # A fresh interpreter, because the fixes of this one are already applied.
    environment = {key: value for key, value in os.environ.items() if key != "PADDLE_TRAINERS_NUM"}
    if processes is not None:
        environment["PADDLE_TRAINERS_NUM"] = processes
    script = "from agent.workloads import patches; print('gloo_group_store' in patches.apply())"

    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True,
                               text=True, timeout=300)

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split()[-1] == str(probed)


@pytest.mark.slow
def test_four_process_groups_with_fix(tmp_path):
    out = tmp_path / "sums"
    out.mkdir()
    completed = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "4",
                                "--log_dir", str(tmp_path / "logs"), str(GROUPS_SCRIPT), str(out), "--fix"],
                               cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, launch_failure(completed, tmp_path / "logs")

    results = {rank: json.loads((out / f"rank-{rank}.json").read_text()) for rank in range(4)}
    # Tensor groups pair neighbouring ranks, pipeline groups pair ranks two apart.
    assert [results[rank]["tensor"]["ranks"] for rank in range(4)] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert [results[rank]["pipeline"]["ranks"] for rank in range(4)] == [[0, 2], [1, 3], [0, 2], [1, 3]]
    assert [results[rank]["tensor"]["sum"] for rank in range(4)] == [1, 1, 5, 5]
    assert [results[rank]["pipeline"]["sum"] for rank in range(4)] == [2, 4, 2, 4]


def test_stage_and_rank_parts_merge(tmp_path):
    # Two stages of two tensor-parallel ranks, each written as a process writes its part, merge into the plain weights.
    import paddle
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    from certification.rulepack import load_rule_pack

    from agent.workloads.models import _tensor_parallel_part
    from agent.workloads.rank_merge import iter_tensors, merge_parts, part_name, write_shards

    preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]["config"]
    paddle.seed(11)
    plain = LlamaForCausalLM(LlamaConfig(**preset))
    weights = plain.state_dict()
    names = list(weights)
    first_stage = names[:len(names) // 2]
    stages = [{name: weights[name] for name in first_stage},
              {name: weights[name] for name in names if name not in first_stage}]
    for stage, stage_weights in enumerate(stages):
        for rank in (0, 1):
            rank_config = LlamaConfig(**preset, tensor_parallel_degree=2, tensor_parallel_rank=rank)
            part = _tensor_parallel_part(LlamaForCausalLM, rank_config, stage_weights)
            write_shards(((name, tensor.numpy()) for name, tensor in part.items()), tmp_path / "parts" / part_name(stage, rank),
                         1 << 20)
    merge_parts(LlamaForCausalLM, LlamaConfig(**preset, tensor_parallel_degree=2), None, tmp_path / "parts",
                tmp_path / "merged", 1 << 20, stages=2)

    merged = dict(iter_tensors(tmp_path / "merged"))
    config = read_json(tmp_path / "merged" / "config.json")
    assert list(merged) == names
    for name, value in weights.items():
        np.testing.assert_array_equal(merged[name], value.numpy(), err_msg=name)
    assert config.get("tensor_parallel_degree", 1) in (-1, 1)
    assert config.get("pipeline_parallel_degree", 1) in (-1, 1)


def test_weight_of_two_stages_taken_once(tmp_path):
    # A tied weight that two stages hold is written once, from the first stage.
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    from agent.workloads.rank_merge import iter_tensors, merge_parts, part_name, write_shards

    tied = np.arange(6, dtype="float32").reshape(3, 2)
    write_shards([("embed", tied), ("first", np.zeros(2, dtype="float32"))], tmp_path / "parts" / part_name(0, 0))
    write_shards([("last", np.ones(2, dtype="float32")), ("embed", tied + 100)], tmp_path / "parts" / part_name(1, 0))
    merge_parts(LlamaForCausalLM, LlamaConfig(), None, tmp_path / "parts", tmp_path / "merged", stages=2)

    merged = dict(iter_tensors(tmp_path / "merged"))
    assert list(merged) == ["embed", "first", "last"]
    np.testing.assert_array_equal(merged["embed"], tied)


def test_merge_rejects_missing_stage(tmp_path):
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    from agent.workloads.rank_merge import merge_parts, part_name, write_shards

    write_shards([("first", np.zeros(2, dtype="float32"))], tmp_path / "parts" / part_name(0, 0))

    with pytest.raises(RuntimeError, match=r"parts of 1 ranks \(\['stage00-rank00'\]\).* split over 2 stage\(s\) x 1"):
        merge_parts(LlamaForCausalLM, LlamaConfig(), None, tmp_path / "parts", tmp_path / "merged", stages=2)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    completed = run_one_process(out, WORKLOAD)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def four_processes(tmp_path_factory):
    """Two stages of two tensor-parallel ranks, each step's global batch of 4 as two micro-batches of 2."""
    folder = tmp_path_factory.mktemp("pipeline-tensor")
    completed = subprocess.run([*launcher_command(folder / "logs", *FOUR_PROCESSES),
                                *run_arguments(folder / "run", WORKLOAD, *BOTH)],
                               cwd=REPO, env=environment(), capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, launch_failure(completed, folder / "logs")
    return folder / "run"


@pytest.mark.slow
def test_four_processes_match_one_process(four_processes, one_process):
    four, one = losses(four_processes, WORKLOAD), losses(one_process, WORKLOAD)

    assert sorted(four) == list(range(1, 41))
    assert four == pytest.approx(one, rel=1e-5)


@pytest.mark.slow
def test_four_processes_records(four_processes):
    records = read_jsonl(four_processes / "workloads" / WORKLOAD / "steps.jsonl")
    trainer = read_json(four_processes / "workloads" / WORKLOAD / "config.json")["trainer"]

    assert all(record["cards"] == 4 for record in records)
    # Every process reads the same batches: the tokens of the global batch, counted once.
    assert all(record["effective_tokens"] == 4 * 64 for record in records)
    assert trainer["parallel_degrees"] == {"data": 1, "sharding": 1, "tensor": 2, "pipeline": 2}
    assert trainer["model_class"] == "LlamaForCausalLMPipe"


@pytest.mark.slow
def test_four_processes_evaluations_match(four_processes, one_process):
    folder, reference = four_processes / "workloads" / WORKLOAD, one_process / "workloads" / WORKLOAD
    validation, expected = read_json(folder / "validation.json"), read_json(reference / "validation.json")

    assert validation["tokens"] == expected["tokens"]
    assert decode_float(validation["loss"]) == pytest.approx(decode_float(expected["loss"]), abs=1e-5)
    assert read_jsonl(folder / "lambada.jsonl") == read_jsonl(reference / "lambada.jsonl")


@pytest.mark.slow
def test_four_processes_save_plain_model(four_processes, one_process):
    # Safetensors shards with the weights of every stage and rank merged by rank 0, and a config of one process.
    # As under tensor parallelism alone, Adam magnifies the rounding differences of the row-parallel sums. With the
    # pack's seed, 7.0e-3 was the largest difference measured, in 42 embedding rows.
    config = check_merged_model(four_processes, one_process, WORKLOAD, tolerance=1e-2)

    assert config.get("tensor_parallel_degree", 1) in (-1, 1)
    assert config.get("pipeline_parallel_degree", 1) in (-1, 1)


@pytest.mark.slow
def test_four_processes_record_evaluation_layout(four_processes):
    layout = read_json(four_processes / "workloads" / WORKLOAD / "config.json")["evaluation"]

    assert layout["evaluated_on"].startswith("tensor-parallel ranks of the pipeline stages: each stage runs its own layers")
    assert "one per pipeline stage and tensor-parallel rank" in layout["saved_by"]


@pytest.fixture(scope="module")
def four_processes_resumed(tmp_path_factory):
    """Kill the launcher and the four processes with SIGKILL after the step-20 checkpoint, then relaunch with --resume."""
    return kill_and_resume(tmp_path_factory.mktemp("pipeline-tensor-resume"), FOUR_PROCESSES, WORKLOAD, *BOTH, timeout=1200)


@pytest.mark.slow
def test_four_processes_resume_reproduces(four_processes_resumed, one_process):
    run, steps_at_kill, checkpoint_files = four_processes_resumed
    restarts = [event for event in read_jsonl(run / "events.jsonl") if event["event"] == "workload_start"]

    # One file per tensor-parallel rank and pipeline stage.
    assert [name for name in checkpoint_files if name.startswith("model_state")] == [
        "model_state.tp00_pp00.pdparams", "model_state.tp00_pp01.pdparams", "model_state.tp01_pp00.pdparams",
        "model_state.tp01_pp01.pdparams"]
    assert 20 <= steps_at_kill < 40
    assert restarts[-1]["resumed_from_step"] == 20
    assert sorted(losses(run, WORKLOAD)) == list(range(1, 41))
    assert losses(run, WORKLOAD) == pytest.approx(losses(one_process, WORKLOAD), rel=1e-5)
    # The rounding differences grow as under tensor parallelism alone. 6.0e-4 was the largest measured, at step 13.
    assert grad_norms(run, WORKLOAD) == pytest.approx(grad_norms(one_process, WORKLOAD), rel=2e-3)


# Loading a save_pretrained folder into two stages of two tensor-parallel ranks by the checkpoint path, as a
# workload that starts from a released checkpoint does.
CHECKPOINT_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, paddle
from paddle.distributed import fleet
from paddlenlp.trainer import TrainingArguments
from certification.rulepack import load_rule_pack
from agent.workloads import models, patches, stage_forward
from agent.workloads.training import parallel_model_settings

# The gloo group fix must be in place before TrainingArguments set up the four processes' groups.
patches.apply()
args = TrainingArguments(output_dir=sys.argv[3], device="cpu", tensor_parallel_degree=2, pipeline_parallel_degree=2,
                         per_device_train_batch_size=2, gradient_accumulation_steps=2,
                         pipeline_parallel_config="disable_batch_p2p_comm", report_to=["none"])
preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]
config = models.model_config(preset, {}, "cpu")
split = models.load_checkpoint(preset, {"path": sys.argv[2]}, config, "float32", parallel_model_settings(args))
plain = models.load_checkpoint(preset, {"path": sys.argv[2]}, config, "float32")
split.eval()
plain.eval()
data = paddle.to_tensor(np.random.default_rng(0).integers(0, 32000, size=(4, 65)), dtype="int64")
inputs, labels = data[:, :-1], data[:, 1:]
print("CLASS", type(split).__name__)
print("PARAMETERS", sum(int(np.prod(p.shape)) for p in split.parameters()), sum(int(np.prod(p.shape)) for p in plain.parameters()))
print("PLAIN", float(plain(input_ids=inputs, labels=labels, return_dict=True).loss))
print("PIPE", float(fleet.distributed_model(split).eval_batch([inputs, labels], compute_loss=True)))
with paddle.no_grad():
    print("STAGES", stage_forward.token_loss_sum(split, data) / int(labels.numel()))
"""


@pytest.mark.slow
def test_checkpoint_loads_into_stages_and_ranks(tmp_path):
    import paddle
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    from certification.rulepack import load_rule_pack

    paddle.seed(7)
    LlamaForCausalLM(LlamaConfig(**load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]["config"])).save_pretrained(
        str(tmp_path / "ckpt"))
    (tmp_path / "load.py").write_text(CHECKPOINT_SCRIPT)
    completed = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", *FOUR_PROCESSES, "--log_dir", str(tmp_path / "logs"),
                                str(tmp_path / "load.py"), str(REPO), str(tmp_path / "ckpt"), str(tmp_path / "out")],
                               cwd=REPO, env=environment(), capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, launch_failure(completed, tmp_path / "logs")

    for rank in range(4):
        values = printed_values(tmp_path / "logs" / f"workerlog.{rank}", ("CLASS", "PARAMETERS", "PLAIN", "PIPE", "STAGES"))
        process_parameters, model_parameters = map(int, values["PARAMETERS"].split())
        assert values["CLASS"] == "LlamaForCausalLMPipe", rank
        # Each process has about half of one stage's weights: a quarter of the model (measured 0.25), where
        # either split alone would leave a half.
        assert process_parameters < model_parameters / 3, rank
        # eval_batch returns the last stage's loss on every stage, and so does the forward pass stage by stage.
        assert float(values["PIPE"]) == pytest.approx(float(values["PLAIN"]), rel=1e-6), rank
        assert float(values["STAGES"]) == pytest.approx(float(values["PLAIN"]), rel=1e-6), rank
