"""Helpers shared by the Paddle workloads: determinism, tokenizer, data files and models.

Paddle and PaddleNLP are imported inside the functions, so that importing this
module stays cheap for the commands that never train.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100

# Flags that make Paddle kernels pick deterministic algorithms. The cuDNN and
# embedding flags matter on GPUs. On the CPU, two runs on the same machine and
# thread count gave identical losses (tests/agent/test_run_smoke.py checks it).
DETERMINISM_FLAGS = {
    "FLAGS_cudnn_deterministic": True,
    "FLAGS_embedding_deterministic": 1,
}


@dataclass
class WorkloadContext:
    """Everything one workload needs: its pack entry, its folders and its inputs."""

    workload_id: str
    spec: dict[str, Any]
    pack: Any
    data_root: Path
    run_dir: Path
    device: str
    cards: int = 1
    init_from: Path | None = None
    heartbeat: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def out_dir(self) -> Path:
        return self.run_dir / "workloads" / self.workload_id

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "models" / self.workload_id

    @property
    def fixed(self) -> dict[str, Any]:
        return self.spec["hyperparameters"]["fixed"]

    @property
    def free(self) -> dict[str, Any]:
        return self.spec["hyperparameters"].get("free", {})

    @property
    def model_preset(self) -> dict[str, Any]:
        return self.pack.data["models"][self.spec["model"]]

    def dataset_path(self, name: str) -> Path:
        return self.data_root / self.pack.data["datasets"][name]["path"]

    def dataset_record(self, name: str) -> dict[str, str]:
        entry = self.pack.data["datasets"][name]
        return {"name": name, "path": entry["path"], "sha256": entry["sha256"]}

    def tokenizer_record(self) -> dict[str, str]:
        name = self.model_preset["tokenizer"]
        entry = self.pack.data["tokenizers"][name]
        return {"name": name, "kind": entry["kind"], "path": entry["path"], "sha256": entry["sha256"]}


def apply_determinism(seed: int, device: str) -> dict[str, Any]:
    """Seed every generator and set Paddle's deterministic flags. Return the recipe for config.json."""
    import paddle

    paddle.set_device(device)
    flags_applied = {}
    for name, value in DETERMINISM_FLAGS.items():
        try:
            paddle.set_flags({name: value})
            flags_applied[name] = value
        except ValueError:
            logger.debug("Paddle flag %s is not known to this build", name)

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)
    return {
        "seed": seed,
        "paddle_flags": flags_applied,
        "dropout": 0.0,
        "data_order": "fixed, no shuffling (sequential batch sampler)",
        "cpu_threads": os.environ.get("OMP_NUM_THREADS", "paddle default"),
    }


def synchronize(device: str) -> None:
    """Wait for queued device work to finish before a clock is read.

    CPU kernels in Paddle's dynamic graph run synchronously, so there is
    nothing to wait for on the CPU, and `paddle.device.synchronize` rejects it.
    """
    if device != "cpu":
        import paddle

        paddle.device.synchronize()


def load_tokenizer(path: Path):
    """Load PaddleNLP's LlamaTokenizer straight from a local SentencePiece file."""
    from paddlenlp.transformers import LlamaTokenizer

    tokenizer = LlamaTokenizer(vocab_file=str(path))
    tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


def encode(tokenizer, text: str) -> list[int]:
    """Return the SentencePiece ids of `text`, without BOS or EOS."""
    return tokenizer.sp_model.encode(text)


def build_model(context: WorkloadContext):
    """Build the pack's model from its config, seeded, with dropout 0."""
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    preset = context.model_preset
    if preset["architecture"] != "LlamaForCausalLM":
        raise ValueError(f"model architecture {preset['architecture']!r} is not supported: use LlamaForCausalLM")
    config = LlamaConfig(**model_config(context))
    return LlamaForCausalLM(config)


def model_config(context: WorkloadContext) -> dict[str, Any]:
    """Return the model config from the pack. PaddleNLP's LLaMA has no dropout layers, so dropout must be 0."""
    dropout = context.fixed.get("dropout", 0.0)
    if dropout != 0.0:
        raise ValueError(f"dropout {dropout} is not supported: PaddleNLP's LlamaForCausalLM has no dropout layers")
    config = dict(context.model_preset["config"])
    config["use_flash_attention"] = False
    return config


def read_text_documents(path: Path) -> list[str]:
    """Split a data file into documents: JSON lines by their text field, plain text by blank lines."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
    return [part.strip() for part in text.split("\n\n") if part.strip()]


def read_pairs(path: Path) -> list[dict[str, str]]:
    """Read instruction pairs, one {"src", "tgt"} object per line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def interleave(lists: list[list]) -> list:
    """Merge lists round-robin, so that every source appears from the first batch on."""
    merged = []
    for index in range(max(len(items) for items in lists)):
        merged.extend(items[index] for items in lists if index < len(items))
    return merged
