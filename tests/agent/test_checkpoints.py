"""Workloads that start from released checkpoints, and packs that select a model through a setting.

The slow tests save tiny LLaMA and Qwen2 models with PaddleNLP's
save_pretrained and point a copy of rule pack tiny-2026.1 at the folder. The
first training step's loss must be the saved model's loss on that batch, which
shows that the weights loaded.
"""

import copy
import hashlib
import json
import math
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from certification.records import decode_float, read_json, read_jsonl
from certification.rulepack import load_rule_pack, parse_rule_pack, validate_rule_pack

from agent.commands.run import parse_checkpoint_folders
from agent.errors import AgentError
from agent.runner.checkpoints import check_checkpoint_folders, manifest, manifest_sha256, folder_files, verify_checkpoint
from agent.runner.plan import input_files, verify_input_files

REPO = Path(__file__).resolve().parents[2]


def tiny_data() -> dict:
    return copy.deepcopy(load_rule_pack("tiny-2026.1").data)


def make_pack(data: dict):
    """A RulePack from edited pack data; the edits must leave it valid."""
    assert validate_rule_pack(data) == []
    return parse_rule_pack(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8"))


def sha256sum_digest(folder: Path) -> str:
    """Compute the digest with coreutils, as docs/training.md shows staff."""
    command = "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"
    return subprocess.run(command, shell=True, cwd=folder, capture_output=True, text=True, check=True).stdout.split()[0]


# Models selected through a setting ------------------------------------------------------------


def setting_pack(selected: str):
    """tiny-2026.1 with pretrain-qwen2 and sft-llama choosing their model through one interpretation setting."""
    data = tiny_data()
    data["settings"].setdefault("interpretations", {})["test_model"] = {"value": selected, "options": ["qwen2-tiny", "llama-tiny"],
                                                                "note": "the model of pretrain-qwen2 and sft-llama"}
    for workload_id in ("pretrain-qwen2", "sft-llama"):
        del data["workloads"][workload_id]["model"]
        data["workloads"][workload_id]["model_setting"] = "test_model"
    return make_pack(data)


def context_for(pack, workload_id: str, tmp_path: Path):
    from agent.workloads.common import WorkloadContext

    return WorkloadContext(workload_id=workload_id, spec=pack.workload(workload_id), pack=pack, data_root=REPO,
                           run_dir=tmp_path, device="cpu", init_from=tmp_path / "models" / "parent")


@pytest.mark.parametrize(("selected", "tokenizer"), [("qwen2-tiny", "gpt-neox-20b"), ("llama-tiny", "llama2")])
def test_model_setting_picks_inputs(selected, tokenizer):
    pack = setting_pack(selected)
    files = input_files(pack, ["pretrain-qwen2"])

    assert f"tokenizer {tokenizer}" in files
    assert [label for label in files if label.startswith("tokenizer")] == [f"tokenizer {tokenizer}"]


@pytest.mark.parametrize("selected", ["qwen2-tiny", "llama-tiny"])
def test_model_setting_in_workload_records(selected, tmp_path):
    from agent.workloads import finetune, pretrain

    pack = setting_pack(selected)
    preset = pack.data["models"][selected]
    pretrain_config = pretrain.resolve_config(context_for(pack, "pretrain-qwen2", tmp_path))
    sft_config = finetune.resolve_config(context_for(pack, "sft-llama", tmp_path), "sft")

    for config in (pretrain_config, sft_config):
        assert config["model"]["name"] == selected
        assert config["model"]["architecture"] == preset["architecture"]
        assert config["model"]["config"]["vocab_size"] == preset["config"]["vocab_size"]
        assert config["tokenizer"]["name"] == preset["tokenizer"]


# Digest and bad input (no Paddle) -------------------------------------------------------------


def safetensors_bytes(dtype: str = "BF16", values: int = 4096) -> bytes:
    """A safetensors file with one 1-D tensor: 8-byte header size, JSON header, then the tensor's bytes (2 per value)."""
    header = json.dumps({"weight": {"dtype": dtype, "shape": [values], "data_offsets": [0, 2 * values]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(range(256)) * (2 * values // 256)


def fake_checkpoint(folder: Path, config: dict | None = None, weights: str | None = "model.safetensors") -> Path:
    """A folder with the files a checkpoint has; the weights are a valid safetensors header over bytes only the digest reads."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or {"architectures": ["LlamaForCausalLM"], "vocab_size": 32000}))
    if weights:
        (folder / weights).write_bytes(safetensors_bytes())
    return folder


def checkpoint_pack(folder: Path, sha256: str | None, status: str = "draft", **model_fields):
    """tiny-2026.1 with a checkpoint for llama-tiny at `folder`, as a path under the repository (the data root)."""
    path = os.path.relpath(folder, REPO)
    data = tiny_data()
    data["status"] = status
    data["models"]["llama-tiny"]["checkpoint"] = {"path": path, "sha256": sha256}
    data["models"]["llama-tiny"].update(model_fields)
    # pretrain-llama starts from the checkpoint; the workloads that start from it are fine-tuned as before.
    return make_pack(data)


def test_manifest_digest_matches_sha256sum(tmp_path):
    folder = fake_checkpoint(tmp_path / "ckpt")
    (folder / "sub").mkdir()
    (folder / "sub" / "tokenizer_config.json").write_text("{}")
    (folder / "Zeta.txt").write_text("upper case sorts first")
    (folder / "größe.txt").write_text("non-ASCII name")

    entries = manifest(folder_files(folder))

    assert [entry["path"] for entry in entries] == ["Zeta.txt", "config.json", "größe.txt", "model.safetensors", "sub/tokenizer_config.json"]
    assert entries[1]["sha256"] == hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    assert manifest_sha256(entries) == sha256sum_digest(folder)


def test_pinned_checkpoint_verified_and_recorded(tmp_path):
    folder = fake_checkpoint(tmp_path / "ckpt")
    pack = checkpoint_pack(tmp_path / "ckpt", sha256sum_digest(folder))

    records = verify_input_files(pack, ["pretrain-llama"], REPO)

    record = records["checkpoint llama-tiny"]
    assert record["path"] == str(folder)
    assert record["pinned"] is True
    assert record["sha256"] == sha256sum_digest(folder)
    assert [entry["path"] for entry in record["files"]] == ["config.json", "model.safetensors"]
    assert record["config"]["architectures"] == ["LlamaForCausalLM"]


def test_workload_with_init_from_loads_no_checkpoint(tmp_path):
    pack = checkpoint_pack(tmp_path / "ckpt", None)

    assert pack.checkpoint_model("pretrain-llama") == "llama-tiny"
    assert pack.checkpoint_model("sft-llama") is None  # it starts from pretrain-llama
    assert "checkpoint llama-tiny" not in verify_input_files(pack, ["pretrain-qwen2"], REPO)


def test_unpinned_checkpoint_recorded_with_its_digest(tmp_path, caplog):
    folder = fake_checkpoint(tmp_path / "ckpt")
    pack = checkpoint_pack(tmp_path / "ckpt", None)

    record = verify_checkpoint(pack, "llama-tiny", folder)

    assert record["pinned"] is False
    assert record["sha256"] == sha256sum_digest(folder)
    assert "not pinned" in caplog.text


def test_vendor_folder_used_and_digest_still_checked(tmp_path):
    folder = fake_checkpoint(tmp_path / "elsewhere")
    pinned = sha256sum_digest(folder)
    pack = checkpoint_pack(tmp_path / "ckpt", pinned)

    records = verify_input_files(pack, ["pretrain-llama"], REPO, {"llama-tiny": folder})
    assert records["checkpoint llama-tiny"]["path"] == str(folder)

    (folder / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(AgentError) as error:
        verify_input_files(pack, ["pretrain-llama"], REPO, {"llama-tiny": folder})
    assert error.value.code == "data_checksum_mismatch"
    assert pinned in error.value.message
    assert str(folder) in error.value.message


@pytest.mark.parametrize(("prepare", "code", "named"), [
    (lambda folder: None, "checkpoint_missing", "no folder at"),
    (lambda folder: fake_checkpoint(folder, weights=None), "checkpoint_incomplete", "has no weights"),
    (lambda folder: (fake_checkpoint(folder), (folder / "config.json").unlink()), "checkpoint_incomplete", "config.json"),
    (lambda folder: (fake_checkpoint(folder, weights="model.safetensors.index.json"),
                     (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))),
     "checkpoint_incomplete", "model-00001-of-00002.safetensors"),
    (lambda folder: (fake_checkpoint(folder, weights="model.safetensors.index.json"),
                     (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../outside.safetensors"}}))),
     "checkpoint_index_invalid", "../outside.safetensors"),
    (lambda folder: (fake_checkpoint(folder, weights="model.safetensors.index.json"),
                     (folder / "model.safetensors.index.json").write_text("{not json")),
     "checkpoint_index_invalid", "not valid JSON"),
    (lambda folder: (fake_checkpoint(folder), (folder / "model-00002-of-00002.safetensors").write_bytes(safetensors_bytes())),
     "checkpoint_stray_weights", "model-00002-of-00002.safetensors"),
    (lambda folder: (fake_checkpoint(folder), (folder / "model.safetensors").write_bytes(b"\xff" * 64)),
     "checkpoint_weights_invalid", "model.safetensors"),
    (lambda folder: fake_checkpoint(folder, {"architectures": ["Qwen2ForCausalLM"]}), "checkpoint_config_mismatch", "Qwen2ForCausalLM"),
    (lambda folder: fake_checkpoint(folder, {"vocab_size": 32000, "hidden_size": 128}), "checkpoint_config_mismatch", "hidden_size=128"),
])
def test_bad_checkpoint_refused(tmp_path, prepare, code, named):
    prepare(tmp_path / "ckpt")
    pack = checkpoint_pack(tmp_path / "ckpt", None)

    with pytest.raises(AgentError) as error:
        verify_input_files(pack, ["pretrain-llama"], REPO)

    assert error.value.code == code
    assert named in error.value.message
    assert "llama-tiny" in error.value.message


def test_checkpoint_option_parsed_and_checked(tmp_path):
    pack = checkpoint_pack(tmp_path / "ckpt", None)

    assert parse_checkpoint_folders(["llama-tiny=/models/llama"]) == {"llama-tiny": Path("/models/llama")}
    check_checkpoint_folders(pack, ["pretrain-llama"], {"llama-tiny": tmp_path})
    for assignment in ("llama-tiny", "=/models", "llama-tiny="):
        with pytest.raises(AgentError) as error:
            parse_checkpoint_folders([assignment])
        assert error.value.code == "checkpoint_option_invalid"
        assert assignment in error.value.message
    with pytest.raises(AgentError) as error:
        check_checkpoint_folders(pack, ["pretrain-qwen2"], {"llama-tiny": tmp_path})
    assert error.value.code == "checkpoint_not_used"
    assert "llama-tiny" in error.value.message


def test_pack_rules_for_checkpoints_and_corpora():
    data = tiny_data()
    data["status"] = "published"
    data["models"]["llama-tiny"]["checkpoint"] = {"path": "ckpt", "sha256": None}
    data["datasets"]["validation_wiki"]["format"] = "paddlenlp_mmap"
    del data["workloads"]["sft-qwen2-moe"]["init_from"]

    paths = {issue.path: issue.message for issue in validate_rule_pack(data)}

    assert "unset digest" in paths["models/llama-tiny/checkpoint/sha256"]
    assert "only be the one train set" in paths["workloads/pretrain-llama/datasets/validation"]
    assert "needs init_from or a model with a checkpoint" in paths["workloads/sft-qwen2-moe/init_from"]


# Training from a saved checkpoint (slow: real Paddle) ------------------------------------------

TRAIN_STEPS = 2


def save_tiny_model(pack, model: str, folder: Path):
    """Save a tiny model with save_pretrained; a wide initializer gives it a loss far from a fresh model's."""
    from agent.workloads.models import build_model, model_config

    preset = pack.data["models"][model]
    saved = build_model(preset, {**model_config(preset, {"dropout": 0.0}, "cpu"), "initializer_range": 0.2}, seed=7)
    saved.save_pretrained(str(folder))
    saved.eval()
    return saved


def short_context(pack, workload_id: str, run_dir: Path, **changes):
    from agent.workloads.common import WorkloadContext

    spec = copy.deepcopy(pack.workload(workload_id))
    spec["hyperparameters"]["fixed"].update(max_steps=TRAIN_STEPS, warmup_steps=1, **changes)
    spec["hyperparameters"]["fixed"].pop("checkpoint_steps", None)
    spec["criteria"] = [criterion for criterion in spec["criteria"] if criterion["metric"] == "loss_window_alignment"]
    context = WorkloadContext(workload_id=workload_id, spec=spec, pack=pack, data_root=REPO, run_dir=run_dir, device="cpu")
    context.out_dir.mkdir(parents=True)
    return context


def batch_loss(model, batch: dict) -> float:
    import paddle

    with paddle.no_grad():
        return float(model(**{key: paddle.to_tensor(value) for key, value in batch.items()}, return_dict=True).loss.item())


def first_step_loss(context) -> float:
    records = read_jsonl(context.out_dir / "steps.jsonl")
    assert [record["step"] for record in records] == list(range(1, TRAIN_STEPS + 1))
    return decode_float(records[0]["loss"])


def fresh_model_loss(pack, model: str, batch: dict) -> float:
    """The loss of a model built from the pack's config with the pack's seed, which the workload trains without a checkpoint."""
    from agent.workloads.models import build_model, model_config

    preset = pack.data["models"][model]
    fresh = build_model(preset, model_config(preset, {"dropout": 0.0}, "cpu"), seed=42)
    fresh.eval()
    return batch_loss(fresh, batch)


@pytest.mark.slow
def test_pretrain_starts_from_saved_llama(tmp_path):
    from agent.workloads import pretrain

    base = load_rule_pack("tiny-2026.1")
    folder = tmp_path / "llama-checkpoint"
    saved = save_tiny_model(base, "llama-tiny", folder)
    pack = checkpoint_pack(folder, sha256sum_digest(folder))
    context = short_context(pack, "pretrain-llama", tmp_path / "run")

    pretrain.run(context)

    blocks = pretrain.training_blocks(context, context.load_tokenizer(), 65)
    first = np.stack([blocks[index] for index in range(4)])
    batch = {"input_ids": first[:, :-1], "labels": first[:, 1:]}
    expected = batch_loss(saved, batch)
    assert math.isclose(first_step_loss(context), expected, rel_tol=1e-5)
    assert abs(fresh_model_loss(base, "llama-tiny", batch) - expected) > 0.1

    config = read_json(context.out_dir / "config.json")
    checkpoint = config["model"]["checkpoint"]
    assert checkpoint["path"] == str(folder)
    assert checkpoint["pinned"] is True
    assert checkpoint["sha256"] == sha256sum_digest(folder)
    assert checkpoint["config_json"]["initializer_range"] == 0.2
    assert config["model"]["config"]["initializer_range"] == 0.2


@pytest.mark.slow
def test_sft_starts_from_saved_qwen2(tmp_path):
    from agent.workloads import finetune
    from agent.workloads.common import interleave, read_pairs

    base = load_rule_pack("tiny-2026.1")
    folder = tmp_path / "qwen2-checkpoint"
    saved = save_tiny_model(base, "qwen2-tiny", folder)
    data = tiny_data()
    data["models"]["qwen2-tiny"]["checkpoint"] = {"path": os.path.relpath(folder, REPO), "sha256": sha256sum_digest(folder)}
    sft = data["workloads"]["sft-llama"]
    sft["model"] = "qwen2-tiny"
    del sft["init_from"]
    pack = make_pack(data)
    context = short_context(pack, "sft-llama", tmp_path / "run", eval_samples_per_dataset=1, max_new_tokens=4)

    finetune.run_sft(context)

    tokenizer = context.load_tokenizer()
    pairs = interleave([read_pairs(context.dataset_path(name)) for name in context.spec["datasets"]["train"]])[:4]
    samples = finetune.InstructionPairs(tokenizer, pairs, 64)
    batch = finetune.collate_right_padded([samples[index] for index in range(4)], pad_id=tokenizer.pad_token_id)
    batch = {key: value.numpy() for key, value in batch.items()}
    expected = batch_loss(saved, batch)
    assert math.isclose(first_step_loss(context), expected, rel_tol=1e-5)
    assert abs(fresh_model_loss(base, "qwen2-tiny", batch) - expected) > 0.1
    assert read_json(context.out_dir / "config.json")["model"]["checkpoint"]["path"] == str(folder)
    assert len(read_jsonl(context.out_dir / "predictions.jsonl")) == 2


# Sharded and bfloat16 checkpoints --------------------------------------------------------------

SHARDED = {"safetensors": ("model.safetensors.index.json", "model-{:05d}-of-{:05d}.safetensors", "safetensors header"),
           "pdparams": ("model_state.pdparams.index.json", "model_state-{:05d}-of-{:05d}.pdparams", "config.json")}


@pytest.fixture(scope="module")
def bf16_shards(tmp_path_factory):
    """The tiny LLaMA of save_tiny_model, cast to bfloat16 and saved in 1 MB shards in both formats.

    Returns the folders by format, the bfloat16 values as float32 arrays by
    parameter name, and the float32 values before the cast.
    """
    from agent.workloads.models import build_model, model_config

    preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]
    model = build_model(preset, {**model_config(preset, {"dropout": 0.0}, "cpu"), "initializer_range": 0.2}, seed=7)
    float32 = {name: value.numpy() for name, value in model.state_dict().items()}
    model.to(dtype="bfloat16")
    bfloat16 = {name: value.astype("float32").numpy() for name, value in model.state_dict().items()}
    folders = {}
    for name, safe in (("safetensors", True), ("pdparams", False)):
        folders[name] = tmp_path_factory.mktemp("bf16") / name
        model.save_pretrained(str(folders[name]), max_shard_size="1MB", safe_serialization=safe)
    return folders, bfloat16, float32


def copied_shards(bf16_shards, weight_format: str, folder: Path) -> Path:
    import shutil

    shutil.copytree(bf16_shards[0][weight_format], folder)
    return folder


@pytest.mark.parametrize("weight_format", SHARDED)
def test_sharded_checkpoint_verified(bf16_shards, weight_format, tmp_path):
    folder = copied_shards(bf16_shards, weight_format, tmp_path / "ckpt")
    index, shard, source = SHARDED[weight_format]
    shards = sorted(path.name for path in folder.glob(shard.split("-", 1)[0] + "-*"))

    record = verify_input_files(checkpoint_pack(folder, sha256sum_digest(folder)), ["pretrain-llama"], REPO)["checkpoint llama-tiny"]

    assert len(shards) >= 2
    assert shard.format(1, len(shards)) in shards
    assert record["pinned"] is True
    assert record["weights"]["index"] == index
    assert record["weights"]["files"] == shards
    assert record["weights"]["stored_dtypes"] == ["bfloat16"]
    assert record["weights"]["stored_dtypes_from"] == source
    assert {entry["path"] for entry in record["files"]} >= {index, *shards}


@pytest.mark.parametrize("weight_format", SHARDED)
def test_sharded_checkpoint_missing_shard(bf16_shards, weight_format, tmp_path):
    folder = copied_shards(bf16_shards, weight_format, tmp_path / "ckpt")
    index, shard, _ = SHARDED[weight_format]
    count = len(set(json.loads((folder / index).read_text())["weight_map"].values()))
    (folder / shard.format(2, count)).unlink()

    with pytest.raises(AgentError) as error:
        verify_input_files(checkpoint_pack(folder, None), ["pretrain-llama"], REPO)

    assert error.value.code == "checkpoint_incomplete"
    assert shard.format(2, count) in error.value.message
    assert index in error.value.message


@pytest.mark.parametrize("weight_format", SHARDED)
def test_sharded_checkpoint_stray_shard(bf16_shards, weight_format, tmp_path):
    import shutil

    folder = copied_shards(bf16_shards, weight_format, tmp_path / "ckpt")
    index, shard, _ = SHARDED[weight_format]
    count = len(set(json.loads((folder / index).read_text())["weight_map"].values()))
    stray = shard.format(count + 1, count + 1)
    shutil.copy(folder / shard.format(1, count), folder / stray)

    with pytest.raises(AgentError) as error:
        verify_input_files(checkpoint_pack(folder, None), ["pretrain-llama"], REPO)

    assert error.value.code == "checkpoint_stray_weights"
    assert stray in error.value.message
    assert shard.format(1, count) not in error.value.message


@pytest.mark.parametrize("weight_format", SHARDED)
def test_bf16_shards_load_as_float32(bf16_shards, weight_format):
    from agent.workloads.models import load_checkpoint, model_config

    folders, bfloat16, float32 = bf16_shards
    preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]

    model = load_checkpoint(preset, {"path": str(folders[weight_format])}, model_config(preset, {"dropout": 0.0}, "cpu"), "float32")
    loaded = {name: value for name, value in model.state_dict().items()}

    assert sorted(loaded) == sorted(bfloat16)
    for name, value in loaded.items():
        assert str(value.dtype) == "paddle.float32", name
        assert np.array_equal(value.numpy(), bfloat16[name]), name
    # The cast to bfloat16 rounded the weights, so equality above shows that the stored bfloat16 values were loaded.
    assert not np.array_equal(bfloat16["llama.embed_tokens.weight"], float32["llama.embed_tokens.weight"])


def bfloat16_model(bf16_shards):
    """A float32 tiny LLaMA holding the bfloat16 values, the model a bfloat16 checkpoint must give on the CPU."""
    import paddle

    from agent.workloads.models import build_model, model_config

    preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]
    model = build_model(preset, model_config(preset, {"dropout": 0.0}, "cpu"), seed=42)
    model.set_state_dict({name: paddle.to_tensor(value) for name, value in bf16_shards[1].items()})
    model.eval()
    return model


def assert_dtypes_recorded(context, weight_format: str) -> None:
    config = read_json(context.out_dir / "config.json")
    checkpoint = config["model"]["checkpoint"]
    assert checkpoint["stored_dtypes"] == ["bfloat16"]
    assert checkpoint["dtype"] == "float32"
    assert checkpoint["config_json"]["dtype"] == "bfloat16"
    assert config["model"]["config"]["dtype"] == "float32"
    assert len(checkpoint["weight_files"]) >= 2
    assert all(name.endswith("." + weight_format) for name in checkpoint["weight_files"])


@pytest.mark.slow
def test_pretrain_starts_from_bf16_shards(bf16_shards, tmp_path):
    from agent.workloads import pretrain

    folder = copied_shards(bf16_shards, "safetensors", tmp_path / "ckpt")
    context = short_context(checkpoint_pack(folder, sha256sum_digest(folder)), "pretrain-llama", tmp_path / "run")

    pretrain.run(context)

    blocks = pretrain.training_blocks(context, context.load_tokenizer(), 65)
    first = np.stack([blocks[index] for index in range(4)])
    batch = {"input_ids": first[:, :-1], "labels": first[:, 1:]}
    assert math.isclose(first_step_loss(context), batch_loss(bfloat16_model(bf16_shards), batch), rel_tol=1e-5)
    assert_dtypes_recorded(context, "safetensors")


@pytest.mark.slow
def test_sft_starts_from_bf16_shards(bf16_shards, tmp_path):
    from agent.workloads import finetune
    from agent.workloads.common import interleave, read_pairs

    folder = copied_shards(bf16_shards, "pdparams", tmp_path / "ckpt")
    data = tiny_data()
    data["models"]["llama-tiny"]["checkpoint"] = {"path": os.path.relpath(folder, REPO), "sha256": sha256sum_digest(folder)}
    del data["workloads"]["sft-llama"]["init_from"]
    context = short_context(make_pack(data), "sft-llama", tmp_path / "run", eval_samples_per_dataset=1, max_new_tokens=4)

    finetune.run_sft(context)

    tokenizer = context.load_tokenizer()
    pairs = interleave([read_pairs(context.dataset_path(name)) for name in context.spec["datasets"]["train"]])[:4]
    samples = finetune.InstructionPairs(tokenizer, pairs, 64)
    batch = finetune.collate_right_padded([samples[index] for index in range(4)], pad_id=tokenizer.pad_token_id)
    batch = {key: value.numpy() for key, value in batch.items()}
    assert math.isclose(first_step_loss(context), batch_loss(bfloat16_model(bf16_shards), batch), rel_tol=1e-5)
    assert_dtypes_recorded(context, "pdparams")


# Pre-tokenized corpora ------------------------------------------------------------------------

CORPUS_BLOCKS = TRAIN_STEPS * 4  # max_steps x global_batch_size of pretrain-llama
BLOCK = 65  # max_seq_length + 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The shipped pretraining text of pretrain-llama, written with PaddleNLP's builder: one item per document,
    BOS + ids + EOS, as the text path tokenizes it. Returns the prefix and the source ids in order."""
    from paddlenlp.data.indexed_dataset import make_builder

    from agent.workloads.common import interleave, load_tokenizer, read_text_documents

    pack = load_rule_pack("tiny-2026.1")
    tokenizer_entry = pack.data["tokenizers"]["llama2"]
    tokenizer = load_tokenizer(REPO / tokenizer_entry["path"], tokenizer_entry["kind"])
    names = pack.workload("pretrain-llama")["datasets"]["train"]
    documents = interleave([read_text_documents(REPO / pack.data["datasets"][name]["path"]) for name in names])
    prefix = tmp_path_factory.mktemp("corpus") / "llama_text_document"
    builder = make_builder(f"{prefix}.bin", "mmap", np.uint16)
    source: list[int] = []
    for document in documents:
        ids = [tokenizer.bos_token_id, *tokenizer.encode(document), tokenizer.eos_token_id]
        builder.add_item(ids)
        builder.end_document()
        source.extend(ids)
        if len(source) > 2 * CORPUS_BLOCKS * BLOCK:
            break
    builder.finalize(f"{prefix}.idx")
    return prefix, source


def corpus_digest(prefix: Path) -> str:
    """The documented digest of a corpus: sha256sum of <prefix>.bin and <prefix>.idx, hashed again."""
    command = ["sh", "-c", f"sha256sum {prefix.name}.bin {prefix.name}.idx | sha256sum"]
    return subprocess.run(command, cwd=prefix.parent, capture_output=True, text=True, check=True).stdout.split()[0]


def corpus_pack(prefix: Path, sha256: str | None):
    data = tiny_data()
    data["datasets"]["corpus"] = {"path": os.path.relpath(prefix, REPO), "format": "paddlenlp_mmap", "sha256": sha256}
    data["workloads"]["pretrain-llama"]["datasets"]["train"] = ["corpus"]
    return make_pack(data)


def test_corpus_blocks_are_the_source_tokens(corpus, tmp_path):
    from agent.workloads import pretrain
    from agent.workloads.common import interleave, read_text_documents

    prefix, source = corpus
    context = short_context(corpus_pack(prefix, corpus_digest(prefix)), "pretrain-llama", tmp_path)
    tokenizer = context.load_tokenizer()

    blocks = pretrain.training_blocks(context, tokenizer, BLOCK)

    assert isinstance(blocks, pretrain.CorpusBlocks)
    assert blocks.dtype == "uint16"
    trained = np.stack([blocks[index] for index in range(len(blocks))])
    assert trained.shape == (CORPUS_BLOCKS, BLOCK)
    assert trained.dtype == np.int64
    assert trained.reshape(-1).tolist() == source[:CORPUS_BLOCKS * BLOCK]
    text_context = short_context(load_rule_pack("tiny-2026.1"), "pretrain-llama", tmp_path / "text")
    assert np.array_equal(trained, pretrain.training_blocks(text_context, tokenizer, BLOCK))


def test_corpus_verified_before_the_run(corpus, tmp_path):
    prefix, _ = corpus
    pack = corpus_pack(prefix, corpus_digest(prefix))

    record = verify_input_files(pack, ["pretrain-llama"], REPO)["dataset corpus"]

    assert record["sha256"] == corpus_digest(prefix)
    assert record["pinned"] is True
    assert [entry["path"] for entry in record["files"]] == [f"{prefix.name}.bin", f"{prefix.name}.idx"]
    with pytest.raises(AgentError) as error:
        verify_input_files(corpus_pack(prefix, "0" * 64), ["pretrain-llama"], REPO)
    assert error.value.code == "data_checksum_mismatch"
    assert "dataset corpus" in error.value.message
    with pytest.raises(AgentError) as error:
        verify_input_files(corpus_pack(tmp_path / "absent", None), ["pretrain-llama"], REPO)
    assert error.value.code == "data_missing"
    assert "absent.bin" in error.value.message


def test_corpus_too_short_or_for_another_vocabulary(corpus, tmp_path):
    from agent.workloads import pretrain

    prefix, source = corpus
    with pytest.raises(ValueError, match=f"contains {len(source)} tokens, fewer than"):
        pretrain.CorpusBlocks(prefix, BLOCK, len(source) // BLOCK + 1, 32000)
    with pytest.raises(ValueError, match="outside the model's vocabulary of 100"):
        pretrain.CorpusBlocks(prefix, BLOCK, 1, 100)[0]


@pytest.mark.slow
def test_corpus_trains_like_its_text(corpus, tmp_path):
    """The same tokens from the corpus and from the text give the same loss at every step."""
    from agent.workloads import pretrain

    prefix, _ = corpus
    from_corpus = short_context(corpus_pack(prefix, corpus_digest(prefix)), "pretrain-llama", tmp_path / "corpus")
    from_text = short_context(load_rule_pack("tiny-2026.1"), "pretrain-llama", tmp_path / "text")
    for context in (from_corpus, from_text):
        pretrain.run(context)

    losses = [[record["loss"] for record in read_jsonl(context.out_dir / "steps.jsonl")] for context in (from_corpus, from_text)]
    assert len(losses[0]) == TRAIN_STEPS
    assert losses[0] == losses[1]
    recipe = read_json(from_corpus.out_dir / "config.json")["data_recipe"]["train"]
    assert "pre-tokenized corpus" in recipe


@pytest.mark.slow
def test_run_command_loads_vendor_checkpoint(tmp_path, monkeypatch):
    """`python -m agent run --checkpoint MODEL=DIR` verifies the folder, trains from it, records it and reuses it on --resume."""
    import certification.rulepack
    import agent.runner.profiles
    from agent.cli import main

    folder = tmp_path / "vendor" / "llama"
    save_tiny_model(load_rule_pack("tiny-2026.1"), "llama-tiny", folder)
    data = tiny_data()
    data["id"] = "checkpointed"
    data["models"]["llama-tiny"]["checkpoint"] = {"path": "absent/llama", "sha256": sha256sum_digest(folder)}
    fixed = data["workloads"]["pretrain-llama"]["hyperparameters"]["fixed"]
    fixed.update(max_steps=TRAIN_STEPS, warmup_steps=1)
    fixed.pop("checkpoint_steps")
    data["workloads"]["pretrain-llama"]["criteria"] = data["workloads"]["pretrain-llama"]["criteria"][:1]
    packs, profiles = tmp_path / "packs", tmp_path / "profiles"
    packs.mkdir()
    profiles.mkdir()
    (packs / "checkpointed-2026.1.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    profile = {"rule_pack": "checkpointed-2026.1", "tracks": ["pretraining"], "level": 1, "device": "cpu",
               "vendor": "Test Vendor", "card": {"model": "CPU", "serial": "1"}, "workloads": ["pretrain-llama"]}
    (profiles / "checkpointed.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    monkeypatch.setattr(certification.rulepack, "RULEPACK_DIR", packs)
    monkeypatch.setattr(agent.runner.profiles, "PROFILE_DIR", profiles)
    out = tmp_path / "run"

    assert main(["run", "--profile", "checkpointed", "--out", str(out), "--checkpoint", f"llama-tiny={folder}"]) == 0

    inputs = read_json(out / "run.json")["inputs"]
    assert inputs["checkpoint llama-tiny"]["path"] == str(folder)
    assert inputs["checkpoint llama-tiny"]["sha256"] == sha256sum_digest(folder)
    assert inputs["tokenizer llama2"]["pinned"] is True
    config = read_json(out / "workloads" / "pretrain-llama" / "config.json")
    assert config["model"]["checkpoint"]["path"] == str(folder)
    assert config["model"]["config"]["initializer_range"] == 0.2
    assert len(read_jsonl(out / "workloads" / "pretrain-llama" / "steps.jsonl")) == TRAIN_STEPS
    # --resume verifies the inputs again and finds the checkpoint in the folder the run was started with.
    assert read_json(out / "run.json")["checkpoint_folders"] == {"llama-tiny": str(folder)}
    assert main(["run", "--profile", "checkpointed", "--out", str(out), "--resume"]) == 0


def test_sft_only_rule_follows_model_setting():
    data = tiny_data()
    interpretations = data["settings"].setdefault("interpretations", {})
    interpretations["sft_only_models"] = {"value": ["qwen2-moe-tiny"], "note": "fine-tuned only"}
    interpretations["test_model"] = {"value": "qwen2-moe-tiny", "options": ["qwen2-tiny", "qwen2-moe-tiny"], "note": "a test choice"}
    del data["workloads"]["pretrain-qwen2"]["model"]
    data["workloads"]["pretrain-qwen2"]["model_setting"] = "test_model"

    paths = {issue.path: issue.message for issue in validate_rule_pack(data)}

    assert "'qwen2-moe-tiny' is SFT only" in paths["workloads/pretrain-qwen2/kind"]
