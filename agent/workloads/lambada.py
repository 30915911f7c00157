"""LAMBADA accuracy: every token of the last word must be the greedy prediction.

Target ids are taken so that context ids + target ids == ids of the full
passage, with the model's own tokenizer. SentencePiece (LLaMA) and byte-level
BPE (GPT-2 style, whose pre-tokenizer keeps a space with the word after it)
both encode "context" and "context word" the same way up to the last word in
nearly every case. Where they do not, the split falls back to the longest
common prefix, so the target also contains the context tokens that merged with
the word, and the item is flagged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paddle

from certification.records import append_jsonl

from agent.i18n import _
from agent.workloads import stage_forward
from agent.workloads.common import encode
from agent.workloads.models import decoder_and_head

logger = logging.getLogger(__name__)

BATCH_SIZE = 64
# PaddleNLP's MoE gate without token dropping sizes each expert's buffer by
# the tokens of the whole batch, so its memory grows with the square of the
# batch; smaller batches keep it small.
MOE_BATCH_SIZE = 8

RECIPE = (
    "passage split at its last space: context = text before it, target = ' ' + last word; ids = BOS + "
    "ids of the model's own tokenizer (SentencePiece or byte-level BPE, no other special tokens); "
    "target ids = ids(full passage)[len(ids(context)):]; if ids(context) is not a prefix of ids(full passage), the split is at their longest common prefix and the item has prefix_mismatch true; "
    "correct = every target token is the argmax of the LM head at the position before it"
)


@dataclass(frozen=True)
class LambadaItem:
    index: int
    ids: list[int]
    context_length: int
    prefix_mismatch: bool

    @property
    def target(self) -> list[int]:
        return self.ids[self.context_length:]


def split_passage(tokenizer, index: int, text: str) -> LambadaItem:
    """Tokenize a passage and find where the ids of its last word begin."""
    context, word = text.rsplit(" ", 1)
    full_ids = [tokenizer.bos_token_id, *encode(tokenizer, f"{context} {word}")]
    context_ids = [tokenizer.bos_token_id, *encode(tokenizer, context)]
    common = common_prefix_length(full_ids, context_ids)
    mismatch = common != len(context_ids)
    return LambadaItem(index=index, ids=full_ids, context_length=common, prefix_mismatch=mismatch)


def common_prefix_length(full_ids: list[int], context_ids: list[int]) -> int:
    """Return how many leading ids the two lists share, never the whole of `full_ids`.

    The target keeps at least one id, so a context that encodes to all of the
    passage's ids still leaves the last id to predict.
    """
    limit = min(len(full_ids) - 1, len(context_ids))
    length = 0
    while length < limit and full_ids[length] == context_ids[length]:
        length += 1
    return length


def read_items(tokenizer, path: Path, limit: int | None) -> list[LambadaItem]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit is not None:
        lines = lines[:limit]
    return [split_passage(tokenizer, index, json.loads(line)["text"]) for index, line in enumerate(lines)]


def padded_batch(items: list[LambadaItem]):
    """Return the input ids and attention mask of the passages, right-padded to the longest."""
    width = max(len(item.ids) for item in items)
    input_ids = paddle.to_tensor([item.ids + [0] * (width - len(item.ids)) for item in items], dtype="int64")
    attention_mask = paddle.to_tensor([[1] * len(item.ids) + [0] * (width - len(item.ids)) for item in items], dtype="int64")
    return input_ids, attention_mask


def target_positions(items: list[LambadaItem]) -> tuple[list[int], list[int], list[int]]:
    """Return the rows, the columns and the target ids of the positions that predict target tokens."""
    # Position p predicts token p + 1, so target tokens start one position earlier.
    rows, columns, targets = [], [], []
    for row, item in enumerate(items):
        for position in range(item.context_length - 1, len(item.ids) - 1):
            rows.append(row)
            columns.append(position)
            targets.append(item.ids[position + 1])
    return rows, columns, targets


def score_batch(model, items: list[LambadaItem]) -> list[bool]:
    """Run the decoder once on right-padded passages, then the LM head only where targets are predicted.

    A pipeline-parallel (`*Pipe`) model runs on its stages, and every
    process of its pipe group must score the same batch.
    """
    from paddle.distributed.fleet.meta_parallel import PipelineLayer

    input_ids, attention_mask = padded_batch(items)
    rows, columns, targets = target_positions(items)
    if isinstance(model, PipelineLayer):
        predictions = stage_forward.predictions_at(model, input_ids, attention_mask, rows, columns)
    else:
        decoder, lm_head = decoder_and_head(model)
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        picked = hidden[paddle.to_tensor(rows), paddle.to_tensor(columns)]
        predictions = lm_head(picked.unsqueeze(0)).squeeze(0).argmax(axis=-1).numpy().tolist()

    hits = [prediction == target for prediction, target in zip(predictions, targets)]
    correct, offset = [], 0
    for item in items:
        correct.append(all(hits[offset:offset + len(item.target)]))
        offset += len(item.target)
    return correct


def evaluate(model, tokenizer, path: Path, out_path: Path | None, limit: int | None,
             on_batch: Callable[..., None] | None = None) -> dict[str, Any]:
    """Score passages in batches of similar length, then write one record per passage in index order.

    `out_path` None scores without writing, as ranks other than 0 do.
    `on_batch`, when given, is called after each batch with the keyword
    arguments `batch` (batches scored so far) and `batches` (their total).
    """
    items = read_items(tokenizer, path, limit)
    by_length = sorted(items, key=lambda item: len(item.ids))
    batch_size = MOE_BATCH_SIZE if "Moe" in type(model).__name__ else BATCH_SIZE
    batch_count = -(-len(by_length) // batch_size)
    model.eval()
    correct: dict[int, bool] = {}
    with paddle.no_grad():
        for number, start in enumerate(range(0, len(by_length), batch_size), start=1):
            batch = by_length[start:start + batch_size]
            correct.update(zip((item.index for item in batch), score_batch(model, batch)))
            if on_batch is not None:
                on_batch(batch=number, batches=batch_count)

    if out_path is not None:
        append_jsonl(out_path, (lambada_record(item, correct[item.index]) for item in items))
    accuracy = sum(correct.values()) / len(items)
    mismatches = sum(item.prefix_mismatch for item in items)
    logger.info(_("LAMBADA: {correct} of {items} correct (accuracy {accuracy:.4f}), {mismatches} prefix mismatches").format(
        correct=sum(correct.values()), items=len(items), accuracy=accuracy, mismatches=mismatches))
    return {"lambada_accuracy": accuracy, "lambada_items": len(items), "lambada_prefix_mismatches": mismatches}


def lambada_record(item: LambadaItem, correct: bool) -> dict[str, Any]:
    record = {"index": item.index, "correct": correct, "target_tokens": item.target}
    if item.prefix_mismatch:
        record["prefix_mismatch"] = True
    return record
