"""Pretraining workload: a model trained from scratch on the pack's corpus, then validation loss and LAMBADA."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import paddle

from certification.records import encode_float, write_json

from agent.workloads import lambada
from agent.workloads.common import (
    WorkloadContext,
    apply_determinism,
    barrier,
    encode,
    interleave,
    read_text_documents,
)
from agent.workloads.models import build_model
from agent.workloads.training import parallel_model_settings, train, training_arguments

logger = logging.getLogger(__name__)

VALIDATION_BATCH_SIZE = 16


class PackedSequences(paddle.io.Dataset):
    """Fixed-length training sequences whose labels are the inputs shifted by one token."""

    def __init__(self, blocks: np.ndarray):
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        block = self.blocks[index]
        return {"input_ids": block[:-1], "labels": block[1:]}


def collate_packed(samples: list[dict[str, np.ndarray]]) -> dict[str, paddle.Tensor]:
    return {key: paddle.to_tensor(np.stack([sample[key] for sample in samples])) for key in samples[0]}


def pack_documents(tokenizer, documents: list[str], block_length: int, block_count: int) -> np.ndarray:
    """Tokenize documents in order (BOS ... EOS each) and cut the stream into `block_count` blocks.

    Tokenizing stops once the stream is long enough, so a short run does not
    tokenize the whole corpus. Raises ValueError when the text is too short.
    """
    needed = block_length * block_count
    stream: list[int] = []
    for document in documents:
        stream.extend([tokenizer.bos_token_id, *encode(tokenizer, document), tokenizer.eos_token_id])
        if len(stream) >= needed:
            break
    if len(stream) < needed:
        raise ValueError(f"the text gives {len(stream)} tokens, fewer than the {needed} that {block_count} blocks need")
    return np.asarray(stream[:needed], dtype="int64").reshape(block_count, block_length)


def resolve_config(context: WorkloadContext) -> dict[str, Any]:
    fixed = context.fixed
    datasets = context.spec["datasets"]
    return {
        "workload": context.workload_id,
        "kind": "pretrain",
        "model": {"name": context.spec["model"], "architecture": context.model_preset["architecture"],
                  "config": context.model_config},
        "hyperparameters": {"fixed": dict(fixed), "free": dict(context.free)},
        "datasets": {
            "train": [context.dataset_record(name) for name in datasets["train"]],
            "validation": context.dataset_record(datasets["validation"]),
            "lambada": context.dataset_record(datasets["lambada"]),
        },
        "tokenizer": context.tokenizer_record(),
        "device": context.device,
        "cards": context.cards,
        "data_recipe": {
            "train": (
                "documents of the train sets merged round-robin in the listed order (plain text split at blank "
                "lines, JSON lines by 'text'); each tokenized as BOS + pieces + EOS, concatenated, and cut into "
                f"max_steps x global_batch_size blocks of max_seq_length + 1 tokens; labels = inputs shifted by one"
            ),
            "validation": (
                f"the first validation_sequences ({fixed['validation_sequences']}) blocks of max_seq_length + 1 "
                "tokens of the validation text, built the same way; loss = sum of token cross-entropy / tokens"
            ),
            "lambada": lambada.RECIPE,
        },
        "step_record": {
            "loss": "mean cross-entropy of the step's global batch, unsmoothed",
            "effective_tokens": "label positions that enter the loss",
            "padded_tokens": "all positions of the (padded) batch",
            "tokens_per_second_per_card": "effective_tokens / step_seconds / cards",
        },
    }


def run(context: WorkloadContext) -> dict[str, Any]:
    fixed = context.fixed
    config = resolve_config(context)
    config["determinism"] = apply_determinism(int(fixed["seed"]), context.device, float(fixed.get("dropout", 0.0)))
    logger.info("%s: resolved config: %s", context.workload_id, config["hyperparameters"])
    tokenizer = context.load_tokenizer()
    block_length = int(fixed["max_seq_length"]) + 1

    # Data: one packed block per sample, in a fixed order.
    documents = interleave([read_text_documents(context.dataset_path(name)) for name in context.spec["datasets"]["train"]])
    blocks = pack_documents(tokenizer, documents, block_length, int(fixed["max_steps"]) * int(fixed["global_batch_size"]))

    # Training: the arguments first, because they set up the parallel groups the model is split over.
    args = training_arguments(context)
    model = build_model(context.model_preset, context.model_config, parallel_model_settings(args))
    trainer, config["trainer"] = train(context, args, model, PackedSequences(blocks), collate_packed)
    if context.is_writer:
        write_json(context.out_dir / "config.json", config)
    trainer.save_model(str(context.model_dir))
    barrier(context)

    # Validation loss over the whole validation set, when a criterion of the workload reads it.
    summary: dict[str, Any] = {}
    if context.measures("validation_loss_difference"):
        validation = validation_loss(context, model, tokenizer, block_length)
        if context.is_writer:
            write_json(context.out_dir / "validation.json", validation)
        logger.info("%s: validation loss %s over %d tokens", context.workload_id, validation["loss"], validation["tokens"])
        summary["validation_loss"] = validation["loss"]

    # LAMBADA, when a criterion of the workload reads it.
    if context.measures("lambada_accuracy_difference"):
        items = context.pack.data["settings"]["lambada"].get("items")
        out_path = context.out_dir / "lambada.jsonl" if context.is_writer else None
        summary.update(lambada.evaluate(model, tokenizer, context.dataset_path(context.spec["datasets"]["lambada"]),
                                        out_path, items))
    return summary


def validation_loss(context: WorkloadContext, model, tokenizer, block_length: int) -> dict[str, Any]:
    """Return the token-level mean cross-entropy over every validation block."""
    count = int(context.fixed["validation_sequences"])
    documents = read_text_documents(context.dataset_path(context.spec["datasets"]["validation"]))
    blocks = pack_documents(tokenizer, documents, block_length, count)
    model.eval()
    total, tokens, batches = 0.0, 0, 0
    with paddle.no_grad():
        for start in range(0, count, VALIDATION_BATCH_SIZE):
            batch = paddle.to_tensor(blocks[start:start + VALIDATION_BATCH_SIZE])
            logits = model(input_ids=batch[:, :-1], return_dict=True).logits.astype("float32")
            losses = paddle.nn.functional.cross_entropy(logits, batch[:, 1:].unsqueeze(-1), reduction="none")
            total += float(losses.astype("float64").sum().item())
            tokens += batch.shape[0] * (block_length - 1)
            batches += 1
    return {"loss": encode_float(total / tokens), "loss_sum": encode_float(total), "tokens": tokens,
            "batches": batches, "sequences": count}
