"""Workloads read a dataset role written as one name or as a list of names (the standard pack writes one name)."""

import copy
from pathlib import Path

import pytest

from certification.rulepack import load_rule_pack

REPO = Path(__file__).resolve().parents[2]


def context_with_datasets(tmp_path, workload_id: str, **datasets):
    from agent.workloads.common import WorkloadContext

    pack = load_rule_pack("tiny-2026.1")
    spec = copy.deepcopy(pack.workload(workload_id))
    spec["datasets"].update(datasets)
    return WorkloadContext(workload_id=workload_id, spec=spec, pack=pack, data_root=REPO, run_dir=tmp_path, device="cpu")


@pytest.mark.parametrize("kind", ["sft", "lora"])
def test_finetune_config_reads_single_names(tmp_path, kind):
    from agent.workloads import finetune

    context = context_with_datasets(tmp_path, f"{kind}-llama", train="sft_en_train", eval="sft_en_dev")

    datasets = finetune.resolve_config(context, kind)["datasets"]

    assert [record["name"] for record in datasets["train"]] == ["sft_en_train"]
    assert [record["name"] for record in datasets["eval"]] == ["sft_en_dev"]


def test_pretrain_config_reads_a_single_train_name(tmp_path):
    from agent.workloads import pretrain

    context = context_with_datasets(tmp_path, "pretrain-llama", train="pretrain_zh")

    datasets = pretrain.resolve_config(context)["datasets"]

    assert [record["name"] for record in datasets["train"]] == ["pretrain_zh"]


def test_lists_keep_pack_order(tmp_path):
    context = context_with_datasets(tmp_path, "sft-llama", train=["sft_en_train", "sft_zh_train"])

    assert context.dataset_names("train") == ["sft_en_train", "sft_zh_train"]
    assert context.dataset_names("calibration") == []


@pytest.mark.slow
def test_single_name_roles_train_and_evaluate(tmp_path):
    """Pretraining and LoRA of the smoke pack run end to end with every role written as one name."""
    from agent.workloads import finetune, pretrain
    from agent.workloads.common import WorkloadContext
    from certification.records import read_jsonl

    pack = load_rule_pack("smoke-2026.1")
    specs = {workload_id: copy.deepcopy(pack.workload(workload_id)) for workload_id in ("pretrain-llama", "lora-llama")}
    specs["pretrain-llama"]["datasets"]["train"] = "pretrain_zh"
    specs["lora-llama"]["datasets"].update(train="sft_en_train", eval="sft_en_dev")
    contexts = {}
    for workload_id, spec in specs.items():
        parent = spec.get("init_from")
        contexts[workload_id] = WorkloadContext(workload_id=workload_id, spec=spec, pack=pack, data_root=REPO, run_dir=tmp_path,
                                                device="cpu", init_from=tmp_path / "models" / parent if parent else None)
        contexts[workload_id].out_dir.mkdir(parents=True)

    pretrain.run(contexts["pretrain-llama"])
    summary = finetune.run_lora(contexts["lora-llama"])

    assert read_jsonl(tmp_path / "workloads" / "pretrain-llama" / "steps.jsonl")
    assert list(summary["predictions_per_dataset"]) == ["sft_en_dev"]
