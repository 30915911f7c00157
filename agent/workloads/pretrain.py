"""Pretraining workload: a model trained on the pack's corpus, then validation loss and LAMBADA.

The model starts from the pack's config, or from its model's released
checkpoint (`models.<name>.checkpoint`). The corpus is text tokenized here,
or a PaddleNLP pre-tokenized memory-mapped corpus (`format: paddlenlp_mmap`).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

import numpy as np
import paddle
from paddle.distributed.fleet.meta_parallel import PipelineLayer

from certification.records import encode_float, write_json

from agent.i18n import _
from agent.runner.checkpoints import MMAP_FORMAT
from agent.workloads import lambada, stage_forward
from agent.workloads.common import (
    WorkloadContext,
    apply_determinism,
    barrier,
    encode,
    interleave,
    read_text_documents,
)
from agent.workloads.models import effective_model_config, is_split, model_record, plain_class, start_model
from agent.workloads.rank_merge import gathered_logits, save_split
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


class CorpusBlocks:
    """Blocks of `length` tokens cut in order from a PaddleNLP memory-mapped corpus, read from disk on demand.

    The corpus (`<prefix>.bin` + `<prefix>.idx`, paddlenlp.data.indexed_dataset)
    stores every sequence's ids one after another in `.bin`, in the data type
    its index names. Block i is tokens i x length .. (i + 1) x length - 1 of
    that stream, so only the blocks a run trains on are ever read.
    """

    def __init__(self, prefix, length: int, count: int, vocab_size: int):
        from paddlenlp.data.indexed_dataset import MMapIndexedDataset

        corpus = MMapIndexedDataset(str(prefix), skip_warmup=True)
        dtype = np.dtype(corpus[0].dtype) if len(corpus) else np.dtype("int32")
        total = int(np.asarray(corpus.sizes, dtype="int64").sum())
        data_path = f"{prefix}.bin"
        stored = os.path.getsize(data_path)
        if stored != total * dtype.itemsize:
            raise ValueError(f"{data_path} contains {stored} bytes, but its index lists {total} tokens of {dtype} "
                             f"({total * dtype.itemsize} bytes); rebuild the corpus with PaddleNLP's tools")
        if total < length * count:
            raise ValueError(f"the corpus {prefix} contains {total} tokens, fewer than the {length * count} that {count} blocks need")
        self.stream = np.memmap(data_path, dtype=dtype, mode="r")
        self.length, self.count, self.vocab_size = length, count, vocab_size
        self.dtype, self.tokens = str(dtype), total

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(index)
        block = np.asarray(self.stream[index * self.length:(index + 1) * self.length], dtype="int64")
        if int(block.max()) >= self.vocab_size:
            raise ValueError(f"block {index} of the corpus contains token id {int(block.max())}, outside the model's "
                             f"vocabulary of {self.vocab_size}; the corpus was tokenized for another model")
        return block


def training_blocks(context: WorkloadContext, tokenizer, block_length: int):
    """Return the training blocks: read from a pre-tokenized corpus, or tokenized from text documents."""
    count = int(context.fixed["max_steps"]) * int(context.fixed["global_batch_size"])
    names = context.dataset_names("train")
    if context.dataset_format(names[0]) == MMAP_FORMAT:
        return CorpusBlocks(context.dataset_path(names[0]), block_length, count, int(effective_model_config(context)["vocab_size"]))
    documents = interleave([read_text_documents(context.dataset_path(name)) for name in names])
    return pack_documents(tokenizer, documents, block_length, count)


def train_recipe(context: WorkloadContext) -> str:
    names = context.dataset_names("train")
    if context.dataset_format(names[0]) == MMAP_FORMAT:
        return ("the token stream of the pre-tokenized corpus (PaddleNLP memory-mapped .bin + .idx, ids as stored, "
                "sequences in stored order) cut into max_steps x global_batch_size blocks of max_seq_length + 1 "
                "tokens, read in order; labels = inputs shifted by one")
    return ("documents of the train sets merged round-robin in the listed order (plain text split at blank "
            "lines, JSON lines by 'text'); each tokenized as BOS + pieces + EOS, concatenated, and cut into "
            "max_steps x global_batch_size blocks of max_seq_length + 1 tokens; labels = inputs shifted by one")


def resolve_config(context: WorkloadContext) -> dict[str, Any]:
    fixed = context.fixed
    datasets = context.spec["datasets"]
    return {
        "workload": context.workload_id,
        "kind": "pretrain",
        "model": model_record(context),
        "hyperparameters": {"fixed": dict(fixed), "free": dict(context.free)},
        "datasets": {
            "train": [context.dataset_record(name) for name in context.dataset_names("train")],
            "validation": context.dataset_record(datasets["validation"]),
            "lambada": context.dataset_record(datasets["lambada"]),
        },
        "tokenizer": context.tokenizer_record(),
        "device": context.device,
        "cards": context.cards,
        "data_recipe": {
            "train": train_recipe(context),
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
    logger.info(_("{workload}: resolved config: {config}").format(workload=context.workload_id, config=config["hyperparameters"]))
    tokenizer = context.load_tokenizer()
    block_length = int(fixed["max_seq_length"]) + 1

    # Data: one packed block per sample, in a fixed order.
    blocks = training_blocks(context, tokenizer, block_length)

    # Training: the arguments first, because they set up the parallel groups the model is split over.
    args = training_arguments(context)
    model = start_model(context, parallel_model_settings(args))
    trainer, config["trainer"] = train(context, args, model, PackedSequences(blocks), collate_packed)
    config["evaluation"] = evaluation_layout(model)
    if context.is_writer:
        write_json(context.out_dir / "config.json", config)

    # Saving as a plain model: a split model part by part, merged by global rank 0.
    save_model(context, trainer, model)
    barrier(context)

    # Validation loss over the whole validation set, when a criterion of the workload reads it.
    # Every rank evaluates in lockstep, because a split model communicates in each forward pass.
    summary: dict[str, Any] = {}
    with gathered_logits(model):
        if context.measures("validation_loss_difference"):
            validation = validation_loss(context, model, tokenizer, block_length)
            if context.is_writer:
                write_json(context.out_dir / "validation.json", validation)
            logger.info(_("{workload}: validation loss {loss} over {tokens} tokens").format(
                workload=context.workload_id, loss=validation["loss"], tokens=validation["tokens"]))
            summary["validation_loss"] = validation["loss"]

        # LAMBADA, when a criterion of the workload reads it.
        if context.measures("lambada_accuracy_difference"):
            items = context.pack.data["settings"]["lambada"].get("items")
            out_path = context.out_dir / "lambada.jsonl" if context.is_writer else None
            summary.update(lambada.evaluate(model, tokenizer, context.dataset_path(context.spec["datasets"]["lambada"]),
                                            out_path, items, partial(context.send_heartbeat, "lambada")))
    return summary


def evaluation_layout(model) -> dict[str, str]:
    """Describe where validation and LAMBADA run after training, and how `models/<workload>` is written."""
    split_saving = ("the first replica's processes write their parts, one per pipeline stage and tensor-parallel rank; "
                    "global rank 0 merges them tensor by tensor, tensor-parallel ranks with PaddleNLP's merge rules")
    if isinstance(model, PipelineLayer):
        place = "tensor-parallel ranks of the pipeline stages" if is_split(model) else "pipeline stages"
        return {"evaluated_on": f"{place}: each stage runs its own layers and sends its activations to the next, and "
                                "the last stage computes the losses and predictions and broadcasts them",
                "saved_by": split_saving}
    if is_split(model):
        return {"evaluated_on": "tensor-parallel ranks", "saved_by": split_saving}
    return {"evaluated_on": "the trained model on every process", "saved_by": "the Trainer (save_model)"}


def save_model(context: WorkloadContext, trainer, model) -> None:
    """Save the trained model to `models/<workload>` as a plain model.

    A pipeline or tensor-parallel model is saved part by part and merged
    by global rank 0, so no process has the whole model in memory.
    """
    if isinstance(model, PipelineLayer) or is_split(model):
        save_split(context, plain_class(context.model_preset), model)
        return
    trainer.save_model(str(context.model_dir))


def validation_loss(context: WorkloadContext, model, tokenizer, block_length: int) -> dict[str, Any]:
    """Return the token-level mean cross-entropy over every validation block."""
    count = int(context.fixed["validation_sequences"])
    documents = read_text_documents(context.dataset_path(context.spec["datasets"]["validation"]))
    blocks = pack_documents(tokenizer, documents, block_length, count)
    batch_count = -(-count // VALIDATION_BATCH_SIZE)
    model.eval()
    total, tokens, batches = 0.0, 0, 0
    with paddle.no_grad():
        for start in range(0, count, VALIDATION_BATCH_SIZE):
            batch = paddle.to_tensor(blocks[start:start + VALIDATION_BATCH_SIZE])
            total += token_loss_sum(model, batch)
            tokens += batch.shape[0] * (block_length - 1)
            batches += 1
            context.send_heartbeat("validation", batch=batches, batches=batch_count)
    return {"loss": encode_float(total / tokens), "loss_sum": encode_float(total), "tokens": tokens,
            "batches": batches, "sequences": count}


def token_loss_sum(model, blocks) -> float:
    """Return the sum of the float32 token cross-entropies of `blocks`, whose labels are the inputs shifted by one.

    A pipeline-parallel model computes it on its stages, and every process
    of its pipe group must call this with the same blocks.
    """
    if isinstance(model, PipelineLayer):
        return stage_forward.token_loss_sum(model, blocks)
    logits = model(input_ids=blocks[:, :-1], return_dict=True).logits.astype("float32")
    losses = paddle.nn.functional.cross_entropy(logits, blocks[:, 1:].unsqueeze(-1), reduction="none")
    return float(losses.astype("float64").sum().item())
