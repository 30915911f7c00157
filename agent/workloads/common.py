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

from certification.rulepack import dataset_names

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100

# Flags that make Paddle kernels pick deterministic algorithms. The cuDNN and
# embedding flags matter on GPUs; the CPU build of Paddle 3.3 knows neither.
# On the CPU, two runs on the same machine and thread count gave identical
# losses (tests/agent/test_run_smoke.py and test_pretrain_processes.py check it).
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
    rank: int = 0
    init_from: Path | None = None
    resume_from: Path | None = None
    heartbeat: Any = None
    events: Any = None
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> checkpoint verified by the runner
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_writer(self) -> bool:
        """True on global rank 0, the only process that writes the run folder."""
        return self.rank == 0

    def send_heartbeat(self, phase: str, **progress: int) -> None:
        """Send the run's heartbeat from global rank 0, which writes it at most once per AGENT_HEARTBEAT_SECONDS."""
        if self.heartbeat is not None and self.is_writer:
            self.heartbeat(self.workload_id, phase, **progress)

    @property
    def out_dir(self) -> Path:
        return self.run_dir / "workloads" / self.workload_id

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "models" / self.workload_id

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints" / self.workload_id

    @property
    def fixed(self) -> dict[str, Any]:
        return self.spec["hyperparameters"]["fixed"]

    @property
    def free(self) -> dict[str, Any]:
        """The pack's free hyperparameters with the vendor's `--set` values applied."""
        free = dict(self.spec["hyperparameters"].get("free", {}))
        free.update({key: value for key, value in self.overrides.items() if key in free})
        return free

    @property
    def model_name(self) -> str:
        """The pack's model key; a `model_setting` resolves through the pack's interpretation settings."""
        if "model_setting" in self.spec:
            return self.pack.model_name(self.workload_id)
        return self.spec["model"]

    @property
    def model_preset(self) -> dict[str, Any]:
        return self.pack.data["models"][self.model_name]

    def measures(self, metric: str) -> bool:
        """True when a criterion of this workload uses `metric`, so the workload records what it reads."""
        return any(criterion["metric"] == metric for criterion in self.spec.get("criteria", []))

    @property
    def checkpoint_model(self) -> str | None:
        """The model whose released checkpoint this workload starts from, or None (see RulePack.checkpoint_model)."""
        return self.pack.checkpoint_model(self.workload_id)

    def checkpoint(self) -> dict[str, Any]:
        """Return the record of the checkpoint this workload reads: folder, digest, files and configs.

        The runner verifies it before the run starts; a context made without
        the runner verifies it here.
        """
        from agent.runner.checkpoints import checkpoint_folder, verify_checkpoint

        model = self.checkpoint_model
        if model not in self.checkpoints:
            folder = checkpoint_folder(self.pack, model, self.data_root, {})
            self.checkpoints[model] = verify_checkpoint(self.pack, model, folder)
        return self.checkpoints[model]

    def dataset_names(self, role: str) -> list[str]:
        """Return the names of the workload's datasets of one role, in pack order (none when the role is absent)."""
        return dataset_names(self.spec["datasets"].get(role))

    def dataset_format(self, name: str) -> str:
        return self.pack.data["datasets"][name].get("format", "text")

    def dataset_path(self, name: str) -> Path:
        return self.data_root / self.pack.data["datasets"][name]["path"]

    def dataset_record(self, name: str) -> dict[str, str]:
        entry = self.pack.data["datasets"][name]
        return {"name": name, "path": entry["path"], "sha256": entry["sha256"]}

    @property
    def model_config(self) -> dict[str, Any]:
        from agent.workloads.models import model_config

        return model_config(self.model_preset, {**self.fixed, **self.free}, self.device)

    def load_tokenizer(self):
        record = self.tokenizer_record()
        tokenizer = load_tokenizer(self.tokenizer_path, record["kind"], record.get("class"))
        model_vocabulary = self.model_preset["config"].get("vocab_size")
        if model_vocabulary is not None and tokenizer.vocab_size > model_vocabulary:
            raise ValueError(f"tokenizer {record['name']} has {tokenizer.vocab_size} ids but model {self.model_name} "
                             f"has vocab_size {model_vocabulary}: give the model a vocab_size of at least {tokenizer.vocab_size}")
        return tokenizer

    @property
    def tokenizer_path(self) -> Path:
        """The tokenizer file: in the checkpoint folder in use when the pack puts it in the model's checkpoint, else under the data root."""
        from agent.runner.checkpoints import tokenizer_in_checkpoint

        model = self.checkpoint_model
        relative = tokenizer_in_checkpoint(self.pack, model) if model is not None else None
        if relative is None:
            return self.data_root / self.tokenizer_record()["path"]
        return Path(self.checkpoint()["path"]) / relative

    def tokenizer_record(self) -> dict[str, str]:
        name = self.model_preset["tokenizer"]
        entry = self.pack.data["tokenizers"][name]
        record = {"name": name, "kind": entry["kind"], "path": entry["path"], "sha256": entry["sha256"]}
        if "class" in entry:
            record["class"] = entry["class"]
        return record


def apply_determinism(seed: int, device: str, dropout: float = 0.0) -> dict[str, Any]:
    """Seed every generator and set Paddle's deterministic flags. Return the recipe for config.json.

    The recipe: one seed for Python, NumPy and Paddle (and the Trainer's own
    seeding); dropout as the pack fixes it (0 for alignment runs); the flags
    of DETERMINISM_FLAGS where this Paddle build knows them; and the data in
    the order the workload builds it, split over data-parallel ranks without
    shuffling. FLAGS_* environment variables in effect are recorded too.
    """
    import paddle

    paddle.set_device(device)
    applied, unknown = {}, []
    for name, value in DETERMINISM_FLAGS.items():
        try:
            paddle.set_flags({name: value})
            applied[name] = value
        except ValueError:
            unknown.append(name)
            logger.debug("Paddle flag %s is not known to this build", name)

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)
    return {
        "seed": seed,
        "paddle_flags": applied,
        "paddle_flags_not_in_build": unknown,
        "flag_environment": {name: value for name, value in sorted(os.environ.items()) if name.startswith("FLAGS_")},
        "dropout": dropout,
        "data_order": "fixed: dataset order, split over data-parallel ranks without shuffling (DistributedBatchSampler)",
        "cpu_threads": os.environ.get("OMP_NUM_THREADS", "paddle default"),
    }


def barrier(context: WorkloadContext) -> None:
    """Wait until every rank reaches this point, so that files rank 0 just wrote are there for all."""
    if context.cards > 1:
        import paddle.distributed

        paddle.distributed.barrier()


def synchronize(device: str) -> None:
    """Wait for queued device work to finish before a clock is read.

    CPU kernels in Paddle's dynamic graph run synchronously, so there is
    nothing to wait for on the CPU, and `paddle.device.synchronize` rejects it.
    """
    if device != "cpu":
        import paddle

        paddle.device.synchronize()


def load_tokenizer(path: Path, kind: str = "sentencepiece", tokenizer_class: str | None = None):
    """Load a tokenizer file of the given kind (see agent.workloads.tokenization)."""
    from agent.workloads.tokenization import load_tokenizer as load

    return load(path, kind, tokenizer_class)


def encode(tokenizer, text: str) -> list[int]:
    """Return the ids of `text`, without BOS or EOS."""
    return tokenizer.encode(text)


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
