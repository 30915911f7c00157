"""Inference workloads that start from a released checkpoint, or from the pack's config when the model has none.

The slow test saves a tiny LLaMA with save_pretrained, names the folder in a
copy of the smoke pack and runs `infer-llama` without `init_from`. Its LAMBADA
records and greedy outputs must equal those of the saved model itself.
"""

import copy
import os
from pathlib import Path

import pytest
import yaml

from certification.records import read_json, read_jsonl
from certification.rulepack import load_rule_pack, parse_rule_pack, validate_rule_pack

from agent.runner.checkpoints import check_checkpoint_folders
from agent.runner.plan import verify_input_files
from tests.agent.test_checkpoints import fake_checkpoint, save_tiny_model, sha256sum_digest

REPO = Path(__file__).resolve().parents[2]
LAMBADA_ITEMS = 20


def smoke_pack(folder: Path | None, sha256: str | None = None, **workload_fields):
    """smoke-2026.1 with infer-llama starting from llama-tiny's checkpoint at `folder` (None: no checkpoint)."""
    data = copy.deepcopy(load_rule_pack("smoke-2026.1").data)
    data["status"] = "draft"
    data["settings"]["lambada"]["items"] = LAMBADA_ITEMS
    if folder is not None:
        data["models"]["llama-tiny"]["checkpoint"] = {"path": os.path.relpath(folder, REPO), "sha256": sha256}
    del data["workloads"]["infer-llama"]["init_from"]
    data["workloads"]["infer-llama"].update(workload_fields)
    assert validate_rule_pack(data) == []
    return parse_rule_pack(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8"))


def infer_context(pack, run_dir: Path, workload_id: str = "infer-llama", **overrides):
    from agent.workloads.common import WorkloadContext

    context = WorkloadContext(workload_id=workload_id, spec=pack.workload(workload_id), pack=pack, data_root=REPO,
                              run_dir=run_dir, device="cpu", overrides=overrides)
    context.out_dir.mkdir(parents=True)
    return context


def test_runner_verifies_inference_checkpoint(tmp_path):
    folder = fake_checkpoint(tmp_path / "ckpt")
    pack = smoke_pack(folder, sha256sum_digest(folder))

    records = verify_input_files(pack, ["infer-llama"], REPO)

    assert pack.checkpoint_model("infer-llama") == "llama-tiny"
    assert records["checkpoint llama-tiny"]["sha256"] == sha256sum_digest(folder)
    check_checkpoint_folders(pack, ["infer-llama"], {"llama-tiny": folder})
    # A workload with init_from runs the model that the earlier workload saved, not the checkpoint.
    assert pack.checkpoint_model("infer-llama-int8wo") is None


def test_inference_checkpoint_digest_checked(tmp_path):
    from agent.errors import AgentError

    folder = fake_checkpoint(tmp_path / "ckpt")
    pack = smoke_pack(folder, "0" * 64)

    with pytest.raises(AgentError) as error:
        verify_input_files(pack, ["infer-llama"], REPO)
    assert error.value.code == "data_checksum_mismatch"


@pytest.mark.slow
def test_inference_runs_the_saved_llama(tmp_path):
    from agent.workloads import inference, lambada
    from agent.workloads.models import build_model, model_config

    folder = tmp_path / "llama-checkpoint"
    saved = save_tiny_model(load_rule_pack("smoke-2026.1"), "llama-tiny", folder)
    pack = smoke_pack(folder, sha256sum_digest(folder))
    context = infer_context(pack, tmp_path / "run")

    summary = inference.run(context)

    tokenizer = context.load_tokenizer()
    expected = infer_context(pack, tmp_path / "expected")
    lambada.evaluate(saved, tokenizer, context.dataset_path("lambada"), expected.out_dir / "lambada.jsonl", LAMBADA_ITEMS)
    prompts = inference.read_prompts(context.dataset_path("inference_prompts"))
    inference.write_generations(expected, saved, tokenizer, prompts)
    assert summary["lambada_items"] == LAMBADA_ITEMS
    assert read_jsonl(context.out_dir / "lambada.jsonl") == read_jsonl(expected.out_dir / "lambada.jsonl")
    generations = read_jsonl(context.out_dir / "generations.jsonl")
    assert generations == read_jsonl(expected.out_dir / "generations.jsonl")

    # The comparison can fail: the model the pack's config builds with the pack's seed writes other text.
    preset = pack.data["models"]["llama-tiny"]
    fresh = build_model(preset, model_config(preset, {}, "cpu"), seed=42)
    fresh.eval()
    inference.write_generations(infer_context(pack, tmp_path / "fresh"), fresh, tokenizer, prompts)
    fresh_predictions = [row["prediction"] for row in read_jsonl(tmp_path / "fresh" / "workloads" / "infer-llama" / "generations.jsonl")]
    assert fresh_predictions != [row["prediction"] for row in generations]

    config = read_json(context.out_dir / "config.json")
    checkpoint = config["model"]["checkpoint"]
    assert checkpoint["path"] == str(folder)
    assert checkpoint["sha256"] == sha256sum_digest(folder)
    assert checkpoint["pinned"] is True
    assert "config.json" in [entry["path"] for entry in checkpoint["files"]]
    assert checkpoint["config_json"]["initializer_range"] == 0.2
    assert checkpoint["dtype"] == "float32"
    assert config["data_type"]["loaded_in"] == "float32"
    assert config["init_from"] is None
    assert config["server"]["scheduler"] == "continuous"
    assert config["server"]["tensor_parallel_degree"] == 1  # the agent's own server runs one process


@pytest.mark.slow
def test_model_without_checkpoint_built_from_config(tmp_path):
    """A model without released weights (GPT-3-175B in the standard's pack) is built from the config with the pack's seed."""
    import numpy as np
    import paddle

    from agent.workloads import inference
    from agent.workloads.models import build_model, model_config

    pack = smoke_pack(None)
    context = infer_context(pack, tmp_path / "run")
    preset = pack.data["models"]["llama-tiny"]
    ids = paddle.to_tensor([[1, 100, 200, 300]], dtype="int64")

    loaded = inference.model_loader(context)("float32")
    built = build_model(preset, model_config(preset, {}, "cpu"), seed=int(context.fixed["seed"]))
    other = build_model(preset, model_config(preset, {}, "cpu"), seed=7)

    logits = []
    for model in (loaded, built, other):
        model.eval()
        logits.append(model(input_ids=ids, return_dict=True).logits.numpy())
    assert np.array_equal(logits[0], logits[1])
    assert not np.allclose(logits[0], logits[2])
    assert "checkpoint" not in inference.resolve_config(context)["model"]


@pytest.mark.slow
def test_inference_without_lambada_set(tmp_path):
    """A workload for performance only, as the standard's GPT-3 175B, names no LAMBADA set and writes no lambada.jsonl."""
    from agent.workloads import inference

    pack = smoke_pack(None, datasets={"prompts": "inference_prompts"},
                      criteria=[{"id": "infer.performance", "metric": "qps_per_tflops_ratio"}])
    context = infer_context(pack, tmp_path / "run", scheduler="static")

    summary = inference.run(context)

    assert "lambada_items" not in summary
    assert read_json(context.out_dir / "config.json")["server"]["scheduler"] == "static"
    assert not (context.out_dir / "lambada.jsonl").exists()
    assert (context.out_dir / "generations.jsonl").is_file()


def test_inference_rejects_unknown_scheduler(tmp_path):
    from agent.workloads import inference

    context = infer_context(smoke_pack(None), tmp_path / "run", scheduler="iteration")
    with pytest.raises(ValueError, match="'iteration'"):
        inference.run(context)
    assert not (context.out_dir / "config.json").exists()
