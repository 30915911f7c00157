"""Training through PaddleNLP's Trainer, with one record per optimizer step.

`StepRecorder` is a TrainerCallback that writes `steps.jsonl` as the run goes.
`RecordingTrainer` hands it the loss of each step before the Trainer averages
or rounds anything.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from typing import Any

import paddle
from paddlenlp.trainer import Trainer, TrainerCallback, TrainingArguments
from paddlenlp.utils.log import logger as paddlenlp_logger

from certification.records import append_jsonl, encode_float

from agent.workloads.common import IGNORE_INDEX, WorkloadContext, synchronize

logger = logging.getLogger(__name__)

PROGRESS_EVERY_STEPS = 20


def warmup_cosine_schedule(fixed: dict[str, Any]):
    """Return a scheduler: linear warmup, then cosine (or linear) decay to `min_learning_rate`."""
    peak = float(fixed["learning_rate"])
    floor = float(fixed.get("min_learning_rate", 0.0))
    warmup = int(fixed.get("warmup_steps", 0))
    total = int(fixed["max_steps"])
    kind = fixed.get("lr_scheduler_type", "linear")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress
        return (floor + (peak - floor) * decay) / peak

    if kind not in ("cosine", "linear"):
        raise ValueError(f"lr_scheduler_type {kind!r} is not supported; use cosine or linear")
    return paddle.optimizer.lr.LambdaDecay(learning_rate=peak, lr_lambda=factor)


def training_arguments(context: WorkloadContext, output_dir: str):
    """Build TrainingArguments from the pack, which sets every value that shapes the run."""
    fixed, free = context.fixed, context.free
    micro_batch = int(free.get("per_device_train_batch_size", fixed["global_batch_size"]))
    accumulation = int(fixed["global_batch_size"]) // (micro_batch * context.cards)
    return TrainingArguments(
        output_dir=output_dir,
        device=context.device,
        max_steps=int(fixed["max_steps"]),
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=max(1, accumulation),
        learning_rate=float(fixed["learning_rate"]),
        weight_decay=float(fixed.get("weight_decay", 0.0)),
        max_grad_norm=float(fixed.get("max_grad_norm", 1.0)),
        seed=int(fixed["seed"]),
        logging_steps=1,
        save_strategy="no",
        report_to=["none"],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def train(context: WorkloadContext, model, dataset, collator) -> dict[str, Any]:
    """Train `model` on `dataset` with the Trainer and return the hyperparameters it used."""
    # The Trainer prints every argument and a line per step, so StepRecorder reports progress instead.
    paddlenlp_logger.set_level("WARNING")
    with tempfile.TemporaryDirectory(prefix="trainer-") as output_dir:
        args = training_arguments(context, output_dir)
        recorder = StepRecorder(context, args)
        trainer = RecordingTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=collator,
            optimizers=(None, warmup_cosine_schedule(context.fixed)),
            callbacks=[recorder],
            recorder=recorder,
        )
        trainer.train()
    return {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_grad_norm": args.max_grad_norm,
        "optimizer": "AdamW (PaddleNLP Trainer default)",
        "learning_rate_schedule": "LambdaDecay: linear warmup, then decay to min_learning_rate",
    }


class RecordingTrainer(Trainer):
    """PaddleNLP's Trainer with the step loss handed to a StepRecorder and a fixed data order."""

    def __init__(self, *args, recorder: "StepRecorder", **kwargs):
        super().__init__(*args, **kwargs)
        self.recorder = recorder

    def _get_train_sampler(self):
        # Batches come in dataset order, and the workloads fix that order when they build the data.
        return paddle.io.BatchSampler(
            dataset=self.train_dataset, shuffle=False, batch_size=self.args.per_device_train_batch_size
        )

    def training_step(self, model, inputs, **kwargs):
        loss = super().training_step(model, inputs, **kwargs)
        self.recorder.add_micro_batch_loss(loss.item())
        return loss

    def _check_loss_valid(self, loss):
        # NOTE: the stock check raises on a NaN or infinite loss. The
        # certification keeps training and records the value, so that the
        # verdict engine reads the NaN in steps.jsonl.
        return None


class StepRecorder(TrainerCallback):
    """Trainer callback that appends one `steps.jsonl` record per optimizer step.

    step_seconds spans on_step_begin to on_step_end (forward, backward and the
    optimizer update of the step), with a device synchronisation before each
    clock reading. effective_tokens counts label positions that enter the loss;
    padded_tokens counts every position of the padded batch.
    """

    def __init__(self, context: WorkloadContext, args):
        self.context = context
        self.path = context.out_dir / "steps.jsonl"
        self.cards = context.cards
        self.max_steps = args.max_steps
        self.accumulation = args.gradient_accumulation_steps
        self._reset()

    def _reset(self):
        self.loss_sum = 0.0
        self.effective_tokens = 0
        self.padded_tokens = 0
        self.grad_norm = None
        self.learning_rate = None
        self.started = None

    def add_micro_batch_loss(self, value: float) -> None:
        # training_step already divides by the accumulation steps, so the sum is the step mean.
        self.loss_sum += value

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize(self.context.device)
        self.started = time.monotonic()

    def on_load_data_end(self, args, state, control, inputs=None, **kwargs):
        labels = inputs["labels"]
        self.effective_tokens += int((labels != IGNORE_INDEX).sum().item())
        self.padded_tokens += int(labels.shape[0] * labels.shape[1])

    def on_optimizer_begin(self, args, state, control, optimizer=None, model=None, **kwargs):
        self.learning_rate = float(optimizer.get_lr())
        self.grad_norm = global_grad_norm(model)

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.context.device)
        seconds = time.monotonic() - self.started
        record = self._record(state.global_step, seconds, state.consumed_samples * self.cards)
        append_jsonl(self.path, [record])
        self._report(record)
        self._reset()

    def _record(self, step: int, seconds: float, consumed_samples: int) -> dict[str, Any]:
        return {
            "step": step,
            "loss": encode_float(self.loss_sum),
            "learning_rate": self.learning_rate,
            "grad_norm": encode_float(self.grad_norm),
            "consumed_samples": consumed_samples,
            "effective_tokens": self.effective_tokens,
            "padded_tokens": self.padded_tokens,
            "step_seconds": seconds,
            "tokens_per_second_per_card": self.effective_tokens / seconds / self.cards,
            "cards": self.cards,
        }

    def _report(self, record: dict[str, Any]) -> None:
        step = record["step"]
        if step == 1 or step % PROGRESS_EVERY_STEPS == 0 or step == self.max_steps:
            logger.info(
                "%s step %d/%d loss %s lr %.3g %.3f s/step",
                self.context.workload_id, step, self.max_steps, record["loss"],
                record["learning_rate"], record["step_seconds"],
            )
        if self.context.heartbeat is not None:
            self.context.heartbeat(self.context.workload_id, step)


def global_grad_norm(model) -> float | None:
    """Return the L2 norm of all gradients before clipping, or None when no parameter has one."""
    squares = [paddle.sum(paddle.square(p.grad.astype("float32"))) for p in model.parameters() if p.grad is not None]
    if not squares:
        return None
    return float(paddle.sqrt(paddle.add_n(squares)).item())
