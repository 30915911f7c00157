"""The SD fine-tuning loop on PaddleNLP's Trainer, with one steps.jsonl record per optimizer step.

The records have the language-model fields that apply to images (`step`,
`loss`, `learning_rate`, `grad_norm`, `consumed_samples`, `step_seconds`,
`cards`), with `images` and `images_per_second_per_card` in place of the
token counts, so that loss alignment reads them the same way.
"""

from __future__ import annotations

import tempfile
from typing import Any

import paddle
from paddlenlp.trainer import Trainer, TrainingArguments
from paddlenlp.utils.log import logger as paddlenlp_logger

from certification.records import encode_float

from agent.workloads.common import WorkloadContext
from agent.workloads.training import TimedStepRecorder, warmup_cosine_schedule


def learning_rate_schedule(fixed: dict[str, Any]):
    """Return a constant rate after linear warmup (PaddleMIX's text-to-image default), or the shared cosine and linear schedules."""
    if fixed.get("lr_scheduler_type", "constant") != "constant":
        return warmup_cosine_schedule(fixed)
    warmup = int(fixed.get("warmup_steps", 0))
    return paddle.optimizer.lr.LambdaDecay(
        learning_rate=float(fixed["learning_rate"]), lr_lambda=lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )


def training_arguments(context: WorkloadContext, output_dir: str) -> TrainingArguments:
    """Build TrainingArguments from the pack: the global batch is micro-batch x accumulation x cards."""
    fixed, free = context.fixed, context.free
    micro_batch = int(free.get("per_device_train_batch_size", fixed["global_batch_size"]))
    global_batch = int(fixed["global_batch_size"])
    if global_batch % (micro_batch * context.cards):
        raise ValueError(f"global_batch_size {global_batch} is not a multiple of per_device_train_batch_size {micro_batch} x {context.cards} cards")
    return TrainingArguments(
        output_dir=output_dir, device=context.device, max_steps=int(fixed["max_steps"]),
        per_device_train_batch_size=micro_batch, gradient_accumulation_steps=global_batch // (micro_batch * context.cards),
        learning_rate=float(fixed["learning_rate"]), weight_decay=float(fixed.get("weight_decay", 0.0)),
        max_grad_norm=float(fixed.get("max_grad_norm", 1.0)), seed=int(fixed["seed"]), logging_steps=1,
        save_strategy="no", report_to=["none"], disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
    )


def train_unet(context: WorkloadContext, objective, dataset, collator) -> dict[str, Any]:
    """Train `objective` (a Layer that returns the loss) on `dataset` and return the settings used."""
    # The Trainer prints every argument and a line per step, so ImageStepRecorder reports progress instead.
    paddlenlp_logger.set_level("WARNING")
    with tempfile.TemporaryDirectory(prefix="trainer-") as output_dir:
        args = training_arguments(context, output_dir)
        recorder = ImageStepRecorder(context, args)
        trainer = ImageTrainer(
            model=objective, args=args, train_dataset=dataset, data_collator=collator,
            optimizers=(None, learning_rate_schedule(context.fixed)), callbacks=[recorder], recorder=recorder,
        )
        trainer.train()
    return {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_grad_norm": args.max_grad_norm,
        "optimizer": "AdamW (PaddleNLP Trainer default) over the UNet; VAE and text encoder frozen",
    }


class ImageTrainer(Trainer):
    """PaddleNLP's Trainer in dataset order, handing every micro-batch's loss and image count to the recorder."""

    def __init__(self, *args, recorder: "ImageStepRecorder", **kwargs):
        super().__init__(*args, **kwargs)
        self.recorder = recorder

    def _get_train_sampler(self):
        # The dataset fixes the order and the noise of every position, so batches must come in that order.
        return paddle.io.BatchSampler(dataset=self.train_dataset, shuffle=False, batch_size=self.args.per_device_train_batch_size)

    def training_step(self, model, inputs, **kwargs):
        loss = super().training_step(model, inputs, **kwargs)
        self.recorder.add_micro_batch(loss.item(), int(inputs["pixel_values"].shape[0]))
        return loss

    def _check_loss_valid(self, loss):
        # NOTE: the stock check raises on a NaN or infinite loss; the loss is recorded instead, for the verdict to read.
        return None


class ImageStepRecorder(TimedStepRecorder):
    """The SD step recorder: the loss, the images of the step and images per second per card.

    Timing, learning rate, gradient norm, progress log and heartbeat come
    from TimedStepRecorder, as for the language models.
    """

    def __init__(self, context: WorkloadContext, args: TrainingArguments):
        super().__init__(context, context.cards, args.max_steps)

    def reset_counts(self) -> None:
        self.images = 0

    def add_micro_batch(self, loss: float, images: int) -> None:
        self.add_micro_batch_loss(loss)
        self.images += images

    def step_record(self, args, state, seconds: float) -> dict[str, Any]:
        return {
            "step": state.global_step, "loss": encode_float(self.loss_sum), "learning_rate": self.learning_rate,
            "grad_norm": encode_float(self.grad_norm), "consumed_samples": state.global_step * args.train_batch_size * args.gradient_accumulation_steps * self.cards,
            "images": self.images, "step_seconds": seconds, "images_per_second_per_card": self.images / seconds, "cards": self.cards,
        }
