"""Fine-tuning workloads (SFT and LoRA) from the pretrained model, then greedy decoding of the dev sets."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import numpy as np
import paddle

from certification.records import append_jsonl, write_json

from agent.workloads.common import (
    IGNORE_INDEX,
    WorkloadContext,
    apply_determinism,
    encode,
    interleave,
    read_pairs,
)
from agent.workloads.models import load_pretrained, model_record, start_model
from agent.workloads.training import parallel_model_settings, train, training_arguments

logger = logging.getLogger(__name__)

LORA_TARGET_MODULES = [".*q_proj.*", ".*k_proj.*", ".*v_proj.*", ".*o_proj.*",
                       ".*gate_proj.*", ".*up_proj.*", ".*down_proj.*"]


class InstructionPairs(paddle.io.Dataset):
    """Tokenized {"src", "tgt"} pairs: BOS + prompt + target + EOS, loss on the target and EOS only."""

    def __init__(self, tokenizer, pairs: list[dict[str, str]], max_length: int):
        self.samples = [self._encode(tokenizer, pair, max_length) for pair in pairs]

    @staticmethod
    def _encode(tokenizer, pair: dict[str, str], max_length: int) -> dict[str, list[int]]:
        prompt = [tokenizer.bos_token_id, *encode(tokenizer, pair["src"])]
        target = [*encode(tokenizer, pair["tgt"]), tokenizer.eos_token_id]
        # Keep at least half of the window for the target when the prompt is long.
        prompt = prompt[: max(max_length // 2, max_length + 1 - len(target))]
        ids = (prompt + target)[: max_length + 1]
        labels = [IGNORE_INDEX] * len(prompt) + target
        return {"input_ids": ids[:-1], "labels": labels[1:len(ids)]}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.samples[index]


def collate_right_padded(samples: list[dict[str, list[int]]], pad_id: int = 0) -> dict[str, paddle.Tensor]:
    width = max(len(sample["input_ids"]) for sample in samples)
    input_ids = np.full((len(samples), width), pad_id, dtype="int64")
    labels = np.full((len(samples), width), IGNORE_INDEX, dtype="int64")
    attention_mask = np.zeros((len(samples), width), dtype="int64")
    for row, sample in enumerate(samples):
        length = len(sample["input_ids"])
        input_ids[row, :length] = sample["input_ids"]
        labels[row, :length] = sample["labels"]
        attention_mask[row, :length] = 1
    return {"input_ids": paddle.to_tensor(input_ids), "labels": paddle.to_tensor(labels),
            "attention_mask": paddle.to_tensor(attention_mask)}


def resolve_config(context: WorkloadContext, kind: str) -> dict[str, Any]:
    fixed = context.fixed
    config = {
        "workload": context.workload_id,
        "kind": kind,
        "init_from": context.spec.get("init_from"),
        "model": model_record(context),
        "hyperparameters": {"fixed": dict(fixed), "free": dict(context.free)},
        "datasets": {
            "train": [context.dataset_record(name) for name in context.dataset_names("train")],
            "eval": [context.dataset_record(name) for name in context.dataset_names("eval")],
        },
        "tokenizer": context.tokenizer_record(),
        "device": context.device,
        "cards": context.cards,
        "data_recipe": {
            "train": (
                "pairs of the train sets merged round-robin in the listed order, the first max_steps x "
                "global_batch_size of them; ids = BOS + src + tgt + EOS, cut to max_seq_length + 1 (the prompt "
                "keeps at most what leaves half the window to the target); loss on tgt and EOS only"
            ),
            "eval": "every dev pair, or the first eval_samples_per_dataset of each set when the pack sets it",
        },
        "generation": {
            "decode_strategy": "greedy_search",
            "max_new_tokens": int(fixed["max_new_tokens"]),
            "eval_batch_size": int(context.free.get("eval_batch_size", 1)),
            "padding_side": "left",
            "prompt": "BOS + src, keeping the last max_seq_length - max_new_tokens ids",
            "prediction": "generated ids up to the first EOS, decoded with special tokens removed",
        },
    }
    if kind == "lora":
        config["lora"] = {"rank": int(fixed["lora_rank"]), "alpha": int(fixed["lora_alpha"]),
                          "target_modules": LORA_TARGET_MODULES, "dropout": 0.0}
    return config


def run_sft(context: WorkloadContext) -> dict[str, Any]:
    return _run(context, "sft")


def run_lora(context: WorkloadContext) -> dict[str, Any]:
    return _run(context, "lora")


def _run(context: WorkloadContext, kind: str) -> dict[str, Any]:
    fixed = context.fixed
    config = resolve_config(context, kind)
    config["determinism"] = apply_determinism(int(fixed["seed"]), context.device, float(fixed.get("dropout", 0.0)))
    logger.info("%s: resolved config: %s", context.workload_id, config["hyperparameters"])
    tokenizer = context.load_tokenizer()

    # Data: instruction pairs in a fixed order.
    train_sets = [read_pairs(context.dataset_path(name)) for name in context.dataset_names("train")]
    pairs = interleave(train_sets)[: int(fixed["max_steps"]) * int(fixed["global_batch_size"])]
    dataset = InstructionPairs(tokenizer, pairs, int(fixed["max_seq_length"]))

    # Model: the weights of init_from or the released checkpoint, with LoRA adapters for the lora kind.
    args = training_arguments(context)
    if context.init_from is not None:
        model = load_pretrained(context.model_preset, context.init_from, parallel_model_settings(args))
    elif context.checkpoint_model is not None:
        model = start_model(context, parallel_model_settings(args))
    else:
        raise ValueError(f"{context.workload_id} has no init_from and model {context.model_name} has no checkpoint to fine-tune")
    trained = wrap_lora(model, fixed, args.tensor_parallel_degree) if kind == "lora" else model

    # Training.
    collator = partial(collate_right_padded, pad_id=tokenizer.pad_token_id)
    _, config["trainer"] = train(context, args, trained, dataset, collator)
    if context.is_writer:
        write_json(context.out_dir / "config.json", config)

    # Greedy decoding of the dev sets.
    counts = generate_predictions(context, model, tokenizer)
    return {"predictions": sum(counts.values()), "predictions_per_dataset": counts}


def wrap_lora(model, fixed: dict[str, Any], tensor_parallel_degree: int = 1):
    from paddlenlp.peft import LoRAConfig, LoRAModel

    lora_config = LoRAConfig(
        target_modules=LORA_TARGET_MODULES,
        r=int(fixed["lora_rank"]),
        lora_alpha=int(fixed["lora_alpha"]),
        lora_dropout=0.0,
        merge_weights=False,
        tensor_parallel_degree=tensor_parallel_degree,
        dtype="float32",
    )
    lora_model = LoRAModel(model, lora_config)
    lora_model.mark_only_lora_as_trainable()
    return lora_model


def generate_predictions(context: WorkloadContext, model, tokenizer) -> dict[str, int]:
    """Decode every dev prompt greedily and append one predictions.jsonl line per sample."""
    fixed = context.fixed
    batch_size = int(context.free.get("eval_batch_size", 1))
    limit = fixed.get("eval_samples_per_dataset")
    prompt_budget = int(fixed["max_seq_length"]) - int(fixed["max_new_tokens"])
    model.eval()
    counts = {}
    for name in context.dataset_names("eval"):
        pairs = read_pairs(context.dataset_path(name))[: limit]
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            prompts = [[tokenizer.bos_token_id, *encode(tokenizer, pair["src"])][-prompt_budget:] for pair in batch]
            outputs = greedy_generate(model, tokenizer, prompts, int(fixed["max_new_tokens"]))
            if context.is_writer:
                append_jsonl(context.out_dir / "predictions.jsonl",
                             (prediction_record(tokenizer, name, start + offset, pair, output)
                              for offset, (pair, output) in enumerate(zip(batch, outputs))))
        counts[name] = len(pairs)
        logger.info("%s: decoded %d prompts of %s", context.workload_id, len(pairs), name)
    return counts


def greedy_generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Return the generated ids of each left-padded prompt, cut at the first EOS."""
    width = max(len(prompt) for prompt in prompts)
    input_ids = [[tokenizer.pad_token_id] * (width - len(prompt)) + prompt for prompt in prompts]
    attention_mask = [[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts]
    with paddle.no_grad():
        generated, _ = model.generate(
            input_ids=paddle.to_tensor(input_ids, dtype="int64"),
            attention_mask=paddle.to_tensor(attention_mask, dtype="int64"),
            max_new_tokens=max_new_tokens,
            decode_strategy="greedy_search",
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            use_cache=True,
        )
    outputs = []
    for row in generated.numpy().tolist():
        outputs.append(row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row)
    return outputs


def prediction_record(tokenizer, dataset: str, index: int, pair: dict[str, str], output: list[int]) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "index": index,
        "prompt": pair["src"],
        "prediction": tokenizer.decode(output, skip_special_tokens=True),
        "reference": pair["tgt"],
        "prediction_tokens": len(output),
    }
