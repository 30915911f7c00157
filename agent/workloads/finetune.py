"""Fine-tuning workloads (SFT and LoRA) from the pretrained model, then greedy decoding of the dev sets."""

from __future__ import annotations

import hashlib
import logging
import zlib
from functools import partial
from typing import Any

import numpy as np
import paddle

from certification.records import append_jsonl, write_json

from agent.i18n import _
from agent.workloads.common import (
    IGNORE_INDEX,
    WorkloadContext,
    apply_determinism,
    encode,
    interleave,
    read_pairs,
)
from agent.workloads.models import is_split, load_pretrained, model_record, start_model
from agent.workloads.rank_merge import gathered_logits
from agent.workloads.training import RecordingTrainer, parallel_model_settings, train, training_arguments

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

    def label_tokens(self) -> list[int]:
        """Return the number of label positions that enter the loss, per sample."""
        return [sum(1 for label in sample["labels"] if label != IGNORE_INDEX) for sample in self.samples]


class GlobalBatchTokens:
    """Label-token counts of the training pairs per global batch and per micro-batch, in the Trainer's data order.

    RecordingTrainer's DistributedBatchSampler gives data rank r of R its
    micro-batch i from the dataset positions (i x R + r) x b .. (i x R + r + 1) x b - 1
    (b: the micro-batch size), so the micro-batches of optimizer step s on all ranks
    together hold global batch s. Once the pairs run out, the Trainer starts a
    new epoch from the first pair, so step s reads global batch s modulo their number.
    """

    def __init__(self, counts: list[int], global_batch_size: int):
        if len(counts) < global_batch_size or len(counts) % global_batch_size:
            raise ValueError(f"{len(counts)} training pairs are not a whole number of global batches of {global_batch_size}")
        self.counts = counts
        self.global_batch_size = global_batch_size
        self.batches = len(counts) // global_batch_size

    def step(self, step: int) -> int:
        """Return the label tokens of the global batch of optimizer step `step` (0-based)."""
        start = (step % self.batches) * self.global_batch_size
        return sum(self.counts[start:start + self.global_batch_size])

    def micro_batch(self, step: int, index: int, size: int, data_rank: int, data_ranks: int) -> int:
        """Return the label tokens of micro-batch `index` of step `step` on one data rank."""
        start = (step % self.batches) * self.global_batch_size + (index * data_ranks + data_rank) * size
        return sum(self.counts[start:start + size])


class TokenMeanTrainer(RecordingTrainer):
    """RecordingTrainer whose step loss is the mean over every label token of the global batch.

    PaddleNLP's causal language models return the mean cross-entropy of their
    micro-batch, and the Trainer averages those means over the micro-batches
    and the data-parallel ranks. Pairs differ in length, so that mean of means
    would depend on the micro-batch size and on the number of ranks. Each
    micro-batch loss is multiplied here by its label tokens x micro-batches x
    data ranks / label tokens of the global batch. The averaged gradient and
    the recorded step loss are then the summed cross-entropy of the global
    batch / its label tokens, whatever the layout.
    """

    def __init__(self, *args, tokens: GlobalBatchTokens, **kwargs):
        super().__init__(*args, **kwargs)
        self.tokens = tokens
        self.step_of_micro_batch, self.micro_batch_index = -1, 0

    def compute_loss(self, model, inputs, return_outputs=False):
        step = self.state.global_step
        if step != self.step_of_micro_batch:
            self.step_of_micro_batch, self.micro_batch_index = step, 0
        local = int((inputs["labels"] != IGNORE_INDEX).sum().item())
        self._check_data_order(step, local)
        self.micro_batch_index += 1

        result = super().compute_loss(model, inputs, return_outputs=return_outputs)
        # NOTE: PaddleNLP 3.0.0b4's LLaMA and Qwen2 criteria divide by the label tokens whose loss is above 0. A
        # token whose float32 cross-entropy rounds to exactly 0 (a very confident prediction) is left out of that
        # count but not out of `local`, so such a micro-batch is weighted slightly too much.
        scale = local * self.args.gradient_accumulation_steps * self.args.dataset_world_size / self.tokens.step(step)
        if return_outputs:
            loss, outputs = result
            return loss * scale, outputs
        return result * scale

    def _check_data_order(self, step: int, local: int) -> None:
        args = self.args
        expected = self.tokens.micro_batch(step, self.micro_batch_index, args.per_device_train_batch_size,
                                           args.dataset_rank, args.dataset_world_size)
        if local != expected:
            raise RuntimeError(
                f"micro-batch {self.micro_batch_index} of step {step + 1} on data rank {args.dataset_rank} has "
                f"{local} label tokens, but the pairs that the data order puts there have {expected}, so the "
                "loss could not be normalised over the global batch; report this with the run folder")


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
                "pairs of the train sets merged round-robin in the listed order; with max_steps the first max_steps x "
                "global_batch_size of them (or, with fewer pairs, whole global batches repeated by epoch), with "
                "num_train_epochs each epoch's whole global batches in the order that `epochs` records; "
                "ids = BOS + src + tgt + EOS, cut to max_seq_length + 1 (the prompt "
                "keeps at most what leaves half the window to the target); loss on tgt and EOS only"
            ),
            "eval": "every dev pair, or the first eval_samples_per_dataset of each set when the pack sets it",
        },
        "loss": ("summed cross-entropy of the global batch's label tokens / those tokens, whatever the micro-batch "
                 "size and the number of data-parallel ranks"),
        "generation": {
            "decode_strategy": "greedy_search",
            "max_new_tokens": int(fixed["max_new_tokens"]),
            "eval_batch_size": int(context.free.get("eval_batch_size", 1)),
            "padding_side": "left",
            "prompt": "BOS + src, keeping the last max_seq_length - max_new_tokens ids",
            "prediction": "generated ids up to the first EOS, decoded with special tokens removed",
            "ranks": ("batches dealt round-robin over the model copies that decode on their own; global rank 0 "
                      "gathers them and writes every prediction once, in dev-set order"),
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
    logger.info(_("{workload}: resolved config: {config}").format(workload=context.workload_id, config=config["hyperparameters"]))
    tokenizer = context.load_tokenizer()

    # Data: instruction pairs in a fixed order, epoch after epoch when the pack sets num_train_epochs.
    pairs, epochs = training_pairs(context)
    if epochs is not None:
        config["epochs"] = epochs
    dataset = InstructionPairs(tokenizer, pairs, int(fixed["max_seq_length"]))
    tokens = GlobalBatchTokens(dataset.label_tokens(), int(fixed["global_batch_size"]))

    # Model: the weights of init_from or the released checkpoint, with LoRA adapters for the lora kind.
    # With max_steps the Trainer runs the pack's count, repeating the pairs by epoch when they hold fewer batches.
    args = training_arguments(context, max_steps=None if epochs is None else epochs["max_steps"])
    if context.init_from is not None:
        model = load_pretrained(context.model_preset, context.init_from, parallel_model_settings(args))
    elif context.checkpoint_model is not None:
        model = start_model(context, parallel_model_settings(args))
    else:
        raise ValueError(f"{context.workload_id} has no init_from and model {context.model_name} has no checkpoint to fine-tune")
    trained = wrap_lora(model, fixed, args.tensor_parallel_degree, args.tensor_parallel_rank) if kind == "lora" else model
    config["generation"]["decoded_on"] = decoding_layout(model, args)

    # Training.
    collator = partial(collate_right_padded, pad_id=tokenizer.pad_token_id)
    _trainer, config["trainer"] = train(context, args, trained, dataset, collator, partial(TokenMeanTrainer, tokens=tokens))
    if context.is_writer:
        write_json(context.out_dir / "config.json", config)

    # Greedy decoding of the dev sets, split over the data-parallel ranks.
    counts = generate_predictions(context, model, tokenizer, args)
    return {"predictions": sum(counts.values()), "predictions_per_dataset": counts}


def training_pairs(context: WorkloadContext) -> tuple[list[dict[str, str]], dict[str, Any] | None]:
    """Return the pairs to train on, one global batch per optimizer step, and the record of the epochs or None.

    With max_steps, these are the first max_steps x global_batch_size pairs,
    or fewer whole global batches. When the train sets hold fewer pairs, the
    Trainer starts new epochs. The pairs are then cut to whole global
    batches, so that every optimizer step reads a full global batch.
    With num_train_epochs, see epoch_pairs.
    """
    fixed = context.fixed
    global_batch = int(fixed["global_batch_size"])
    pairs = interleave([read_pairs(context.dataset_path(name)) for name in context.dataset_names("train")])
    if len(pairs) < global_batch:
        raise ValueError(f"the train sets of {context.workload_id} hold {len(pairs)} pairs, fewer than one global batch "
                         f"of {global_batch}: add pairs or check the pack's train datasets")
    if "num_train_epochs" in fixed:
        return epoch_pairs(pairs, global_batch, int(fixed["num_train_epochs"]), int(fixed["seed"]))
    pairs = pairs[: int(fixed["max_steps"]) * global_batch]
    return pairs[: len(pairs) // global_batch * global_batch], None


def epoch_pairs(pairs: list[dict[str, str]], global_batch: int, epochs: int, seed: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Return the pairs of `epochs` passes in training order, and the record of that order for config.json.

    Each epoch trains on len(pairs) // global_batch whole global batches.
    Epoch e (1-based) takes the pairs in the order of
    numpy.random.default_rng([seed, e]).permutation(len(pairs)) and leaves
    out the last len(pairs) % global_batch of that order, as PaddleNLP's
    Trainer shuffles its sampler each epoch. The order depends on the seed
    only, so every layout and every rerun trains on the same batches.
    """
    steps_per_epoch = len(pairs) // global_batch
    ordered: list[dict[str, str]] = []
    digests = []
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([seed, epoch]).permutation(len(pairs))[: steps_per_epoch * global_batch]
        ordered.extend(pairs[index] for index in order)
        digests.append(hashlib.sha256(order.astype("<i8").tobytes()).hexdigest())
    record = {
        "num_train_epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "max_steps": steps_per_epoch * epochs,
        "train_pairs": len(pairs),
        "pairs_left_out_per_epoch": len(pairs) % global_batch,
        "order": ("epoch e (1-based) reads the merged train pairs at the indices "
                  "numpy.random.default_rng([seed, e]).permutation(train_pairs), without the last pairs_left_out_per_epoch"),
        "seed": seed,
        "order_sha256": digests,  # sha256 of each epoch's indices as little-endian int64
    }
    return ordered, record


def wrap_lora(model, fixed: dict[str, Any], tensor_parallel_degree: int = 1, tensor_parallel_rank: int = 0):
    """Add LoRA adapters to `model` and freeze everything else. Under tensor parallelism `model` is one rank's part."""
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
    initialize_lora_a(model, int(fixed["seed"]), tensor_parallel_degree, tensor_parallel_rank)
    lora_model.mark_only_lora_as_trainable()
    return lora_model


def initialize_lora_a(model, seed: int, tensor_parallel_degree: int = 1, tensor_parallel_rank: int = 0) -> None:
    """Set every LoRA A matrix of `model` from the seed and the layer's name, so that every layout starts alike.

    PaddleNLP 3.0.0b4 draws A from Paddle's global generator, so its values
    depend on what the model drew before, and a row-parallel layer draws its
    rows with the fan-in of its part. Here A is drawn whole for each layer,
    from the distribution PaddleNLP uses (KaimingUniform with a negative
    slope of sqrt(5), which is U(-1/sqrt(in_features), 1/sqrt(in_features))),
    and a row-parallel layer keeps this rank's block of rows. B starts at zero
    in every layout.
    """
    for name, layer in model.named_sublayers():
        lora_a = getattr(layer, "lora_A", None)
        if lora_a is None:
            continue
        rows, rank = lora_a.shape
        # Row-parallel layers split A along its input rows (PaddleNLP sets is_distributed and split_axis 0).
        row_parallel = getattr(lora_a, "is_distributed", False) and tensor_parallel_degree > 1
        in_features = rows * tensor_parallel_degree if row_parallel else rows
        generator = np.random.default_rng([seed, zlib.crc32(name.encode())])
        limit = 1.0 / np.sqrt(in_features)
        whole = generator.uniform(-limit, limit, size=(in_features, rank)).astype("float32")
        part = whole[tensor_parallel_rank * rows:(tensor_parallel_rank + 1) * rows] if row_parallel else whole
        lora_a.set_value(paddle.to_tensor(part, dtype=lora_a.dtype))


def generate_predictions(context: WorkloadContext, model, tokenizer, args) -> dict[str, int]:
    """Decode every dev prompt greedily and write one predictions.jsonl line per sample, in dev-set order.

    Batch i goes to model copy i mod the number of copies (see
    decoding_copies). Global rank 0 gathers every batch's records and writes
    them. Return the number of prompts per dev set.
    """
    fixed = context.fixed
    prompt_budget = int(fixed["max_seq_length"]) - int(fixed["max_new_tokens"])
    batches = dev_batches(context)
    copy, copies = decoding_copies(args)
    model.eval()
    records: dict[int, list[dict[str, Any]]] = {}
    # A split model's LM head gathers the whole logits, so every rank of the group picks the same greedy token.
    with gathered_logits(model):
        for index, (name, start, batch) in enumerate(batches):
            if index % copies != copy:
                continue
            prompts = [[tokenizer.bos_token_id, *encode(tokenizer, pair["src"])][-prompt_budget:] for pair in batch]
            outputs = greedy_generate(model, tokenizer, prompts, int(fixed["max_new_tokens"]))
            records[index] = [prediction_record(tokenizer, name, start + offset, pair, output)
                              for offset, (pair, output) in enumerate(zip(batch, outputs))]
            context.send_heartbeat("decoding", batch=index + 1, batches=len(batches))
    logger.info(_("{workload}: decoded {decoded} of {batches} dev batches on model copy {copy} of {copies}").format(
        workload=context.workload_id, decoded=len(records), batches=len(batches), copy=copy, copies=copies))

    ordered = gather_batches(records, len(batches), args)
    if context.is_writer:
        append_jsonl(context.out_dir / "predictions.jsonl", ordered)
    counts: dict[str, int] = {}
    for name, _start, batch in batches:
        counts[name] = counts.get(name, 0) + len(batch)
    return counts


def shards_parameters(args) -> bool:
    """Return whether sharding stage 3 holds only a slice of each parameter on every rank of the sharding group."""
    stages = " ".join(str(getattr(option, "value", option)) for option in args.sharding)
    return "stage3" in stages and max(1, int(args.sharding_parallel_degree)) > 1


def decoding_copies(args) -> tuple[int, int]:
    """Return this process's model copy and the number of copies that decode dev batches on their own.

    The ranks of a tensor-parallel group decode the same batches together,
    because the split layers communicate in each forward pass. Under
    sharding stage 3 so do the ranks of a sharding group, because Paddle's
    stage 3 all-gathers each layer's parameters over the group in a hook
    before the layer runs. Stages 1 and 2 keep whole parameters on every
    rank, so there each sharding rank decodes batches of its own.
    """
    if shards_parameters(args):
        return args.data_parallel_rank, max(1, int(args.data_parallel_degree))
    return args.dataset_rank, args.dataset_world_size


def decoding_layout(model, args) -> str:
    """Describe which processes decode a dev batch together, for config.json."""
    together = []
    if is_split(model):
        together.append("the tensor-parallel ranks, whose LM head gathers the whole logits on every rank")
    if shards_parameters(args):
        together.append("the sharding ranks, which all-gather each layer's parameters (stage 3)")
    if not together:
        return "each data-parallel and sharding rank decodes its own batches with the whole model"
    return f"{' and '.join(together)} decode the same batches together"


def dev_batches(context: WorkloadContext) -> list[tuple[str, int, list[dict[str, str]]]]:
    """Return the dev batches in dev-set order: (dataset name, index of the first pair, pairs)."""
    batch_size = int(context.free.get("eval_batch_size", 1))
    limit = context.fixed.get("eval_samples_per_dataset")
    batches = []
    for name in context.dataset_names("eval"):
        pairs = read_pairs(context.dataset_path(name))[: limit]
        batches.extend((name, start, pairs[start:start + batch_size]) for start in range(0, len(pairs), batch_size))
    return batches


def gather_batches(records: dict[int, list[dict[str, Any]]], total: int, args) -> list[dict[str, Any]]:
    """Collect every rank's decoded batches and return their records in batch order.

    Every rank takes part. Only the first rank of each model copy sends its
    batches, because the other ranks of the copy decoded the same ones.
    """
    if args.world_size > 1:
        import paddle.distributed

        first = args.tensor_parallel_rank == 0 and (args.sharding_parallel_rank == 0 or not shards_parameters(args))
        parts: list[dict[int, list[dict[str, Any]]]] = []
        paddle.distributed.all_gather_object(parts, records if first else {})
        records = {}
        for part in parts:
            for index, batch in part.items():
                if index in records:
                    raise RuntimeError(f"dev batch {index} was decoded by more than one data rank")
                records[index] = batch
    missing = sorted(set(range(total)) - set(records))
    if missing:
        raise RuntimeError(f"dev batches {missing} were decoded by no rank")
    return [record for index in range(total) for record in records[index]]


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
