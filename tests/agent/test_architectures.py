"""Every tiny architecture of rule pack tiny-2026.1 trains, evaluates and fine-tunes through the Trainer path."""

import copy
import math
from pathlib import Path

import pytest

from certification.records import decode_float, read_json, read_jsonl
from certification.rulepack import load_rule_pack

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = ["pretrain-llama", "pretrain-qwen2", "init-qwen2-moe", "pretrain-gpt"]
FINETUNE = [("sft-qwen2-moe", "init-qwen2-moe"), ("lora-qwen2", "pretrain-qwen2"), ("lora-llama", "pretrain-llama")]
PRETRAIN_STEPS = 4
# A vendor's --set of a free key: two micro-batches of 2 make the global batch of 4.
OVERRIDES = {"pretrain-gpt": {"per_device_train_batch_size": 2}}
FINETUNE_STEPS = 2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pack():
    return load_rule_pack("tiny-2026.1")


def shortened_context(pack, workload_id: str, run_dir: Path, steps: int, **changes):
    from agent.workloads.common import WorkloadContext

    spec = copy.deepcopy(pack.workload(workload_id))
    spec["hyperparameters"]["fixed"].update(max_steps=steps, warmup_steps=1, **changes)
    spec["hyperparameters"]["fixed"].pop("checkpoint_steps", None)
    # Every pretraining workload measures what pretrain-llama measures, so each architecture runs every path.
    if spec["kind"] == "pretrain":
        spec["criteria"] = pack.workload("pretrain-llama")["criteria"]
    parent = spec.get("init_from")
    context = WorkloadContext(workload_id=workload_id, spec=spec, pack=pack, data_root=REPO, run_dir=run_dir,
                              device="cpu", init_from=run_dir / "models" / parent if parent else None)
    context.out_dir.mkdir(parents=True)
    return context


@pytest.fixture(scope="module")
def pretrained(pack, tmp_path_factory):
    from agent.workloads import pretrain

    run_dir = tmp_path_factory.mktemp("architectures")
    summaries = {}
    for workload_id in PRETRAIN:
        context = shortened_context(pack, workload_id, run_dir, PRETRAIN_STEPS)
        context.overrides = OVERRIDES.get(workload_id, {})
        summaries[workload_id] = pretrain.run(context)
    return run_dir, summaries


@pytest.mark.parametrize("workload", PRETRAIN)
def test_pretrain_steps(pretrained, workload):
    run_dir, _ = pretrained
    records = read_jsonl(run_dir / "workloads" / workload / "steps.jsonl")

    assert [record["step"] for record in records] == list(range(1, PRETRAIN_STEPS + 1))
    assert all(math.isfinite(decode_float(record["loss"])) for record in records)
    assert all(record["effective_tokens"] == record["padded_tokens"] == 4 * 64 for record in records)
    assert decode_float(records[-1]["loss"]) < decode_float(records[0]["loss"])


@pytest.mark.parametrize("workload", PRETRAIN)
def test_pretrain_config_names_architecture(pretrained, pack, workload):
    run_dir, _ = pretrained
    config = read_json(run_dir / "workloads" / workload / "config.json")
    preset = pack.data["models"][pack.workload(workload)["model"]]

    assert config["model"]["architecture"] == preset["architecture"]
    assert config["tokenizer"]["kind"] == pack.data["tokenizers"][preset["tokenizer"]]["kind"]
    assert (run_dir / "models" / workload / "config.json").is_file()


def test_pretrain_free_key_override(pretrained):
    run_dir, _ = pretrained
    config = read_json(run_dir / "workloads" / "pretrain-gpt" / "config.json")
    steps = read_jsonl(run_dir / "workloads" / "pretrain-gpt" / "steps.jsonl")

    assert config["hyperparameters"]["free"]["per_device_train_batch_size"] == 2
    assert config["trainer"]["gradient_accumulation_steps"] == 2
    assert config["trainer"]["per_device_train_batch_size"] == 2
    assert steps[-1]["consumed_samples"] == PRETRAIN_STEPS * 4


@pytest.mark.parametrize("workload", PRETRAIN)
def test_pretrain_evaluations(pretrained, pack, workload):
    run_dir, summaries = pretrained
    validation = read_json(run_dir / "workloads" / workload / "validation.json")
    items = read_jsonl(run_dir / "workloads" / workload / "lambada.jsonl")

    assert validation["tokens"] == 8 * 64
    assert math.isfinite(validation["loss"])
    assert len(items) == pack.data["settings"]["lambada"]["items"]
    assert summaries[workload]["lambada_prefix_mismatches"] == 0


def test_gpt_dropout_from_pack(pack, tmp_path):
    context = shortened_context(pack, "pretrain-gpt", tmp_path, 1, dropout=0.1)

    config = context.model_config

    assert config["hidden_dropout_prob"] == 0.1
    assert config["attention_probs_dropout_prob"] == 0.1


def test_llama_rejects_dropout(pack, tmp_path):
    context = shortened_context(pack, "pretrain-llama", tmp_path, 1, dropout=0.1)

    with pytest.raises(ValueError, match="no dropout layers"):
        context.model_config


@pytest.mark.parametrize(("workload", "parent"), FINETUNE)
def test_finetune_from_pretrained(pretrained, pack, workload, parent):
    from agent.workloads import RUNNERS

    run_dir, _ = pretrained
    context = shortened_context(pack, workload, run_dir, FINETUNE_STEPS, eval_samples_per_dataset=2)

    summary = RUNNERS[pack.workload(workload)["kind"]](context)

    steps = read_jsonl(context.out_dir / "steps.jsonl")
    predictions = read_jsonl(context.out_dir / "predictions.jsonl")
    assert len(steps) == FINETUNE_STEPS
    assert all(0 < record["effective_tokens"] < record["padded_tokens"] for record in steps)
    assert summary["predictions"] == len(predictions) == 4
    assert {record["dataset"] for record in predictions} == {"sft_zh_dev", "sft_en_dev"}
    assert all("<|endoftext|>" not in record["prediction"] for record in predictions)
