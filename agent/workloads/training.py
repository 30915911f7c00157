"""Training through PaddleNLP's Trainer, with one record per optimizer step.

`StepRecorder` is a TrainerCallback that writes `steps.jsonl` as the run goes.
`RecordingTrainer` hands it the loss and token counts of each micro-batch
before the Trainer averages or rounds anything. Checkpoints go to
`RUN/checkpoints/<workload>/checkpoint-<step>` on the pack's
`checkpoint_steps` schedule, and a workload resumes from the one that
`WorkloadContext.resume_from` names.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import time
from typing import Any

import paddle
from paddlenlp.trainer import Trainer, TrainerCallback, TrainingArguments
from paddlenlp.utils.batch_sampler import DistributedBatchSampler
from paddlenlp.utils.log import logger as paddlenlp_logger

from certification.records import append_jsonl, encode_float

from agent.i18n import _
from agent.workloads import patches
from agent.workloads.common import IGNORE_INDEX, WorkloadContext, barrier, synchronize
from agent.workloads.grad_norm import GradientNormCapture
from agent.workloads.models import pipeline_class

logger = logging.getLogger(__name__)

PROGRESS_EVERY_STEPS = 20
SHARDING_STAGES = {0: "", 1: "stage1", 2: "stage2", 3: "stage3"}


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


# TrainingArguments that the agent sets itself from the pack. Every other pack key
# that names a TrainingArguments field (bf16, fp16_opt_level, sharding_parallel_degree
# and so on) is passed to PaddleNLP as it is. Fine-tuning turns num_train_epochs into
# max_steps itself (agent.workloads.finetune.training_pairs).
SET_BY_AGENT = {
    "output_dir", "device", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "lr_scheduler_type", "warmup_steps", "min_learning_rate", "weight_decay", "max_grad_norm",
    "seed", "logging_steps", "save_strategy", "save_steps", "save_total_limit", "report_to", "disable_tqdm",
    "dataloader_num_workers", "remove_unused_columns", "tensor_parallel_degree", "pipeline_parallel_degree",
    "sharding", "recompute", "num_train_epochs",
}


def parallel_arguments(free: dict[str, Any]) -> dict[str, Any]:
    """Map the pack's free parallel keys to PaddleNLP TrainingArguments fields.

    The sharding stage is either `sharding_stage` (0-3) or PaddleNLP's own
    `sharding` string (such as "stage2"), which wins when both are present.
    """
    stage = int(free.get("sharding_stage", 0))
    if stage not in SHARDING_STAGES:
        raise ValueError(f"sharding_stage {stage} is not supported: use 0, 1, 2 or 3")
    return {
        "tensor_parallel_degree": int(free.get("tensor_parallel_degree", 1)),
        "pipeline_parallel_degree": int(free.get("pipeline_parallel_degree", 1)),
        "sharding": str(free.get("sharding", SHARDING_STAGES[stage])),
        "recompute": bool(free.get("recompute", False)),
    }


def passed_through(fixed: dict[str, Any], free: dict[str, Any]) -> dict[str, Any]:
    """Return the pack keys, fixed and free, that name other TrainingArguments fields."""
    fields = {item.name for item in dataclasses.fields(TrainingArguments)}
    return {key: value for key, value in {**fixed, **free}.items() if key in fields and key not in SET_BY_AGENT}


def training_arguments(context: WorkloadContext, output_dir: str | None = None,
                       max_steps: int | None = None) -> TrainingArguments:
    """Build TrainingArguments from the pack, which sets every value that shapes the run.

    Build them before the model: under `paddle.distributed.launch` this sets
    up the hybrid-parallel groups that the model's layers are split over.
    Checkpoints go to `output_dir`, by default the workload's checkpoint folder.
    `max_steps` replaces the pack's max_steps, for a length that the workload
    derives from num_train_epochs.
    """
    fixed, free = context.fixed, context.free
    micro_batch = int(free.get("per_device_train_batch_size", fixed["global_batch_size"]))
    checkpoint_steps = fixed.get("checkpoint_steps")
    parallel = parallel_arguments(free)
    check_pipeline_support(context, parallel["pipeline_parallel_degree"])
    # The gloo group fix must be in place before TrainingArguments set up the groups.
    patches.apply()
    model_ranks = parallel["tensor_parallel_degree"] * parallel["pipeline_parallel_degree"]
    args = TrainingArguments(
        output_dir=output_dir or str(context.checkpoint_dir),
        device=context.device,
        max_steps=int(max_steps if max_steps is not None else fixed["max_steps"]),
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation_steps(fixed, micro_batch, max(1, context.cards // model_ranks)),
        learning_rate=float(fixed["learning_rate"]),
        weight_decay=float(fixed.get("weight_decay", 0.0)),
        max_grad_norm=float(fixed.get("max_grad_norm", 1.0)),
        seed=int(fixed["seed"]),
        logging_steps=1,
        save_strategy="steps" if checkpoint_steps else "no",
        save_steps=int(checkpoint_steps or 1),
        save_total_limit=free.get("checkpoint_keep"),
        report_to=["none"],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **parallel,
        **pipeline_settings(context, parallel["pipeline_parallel_degree"]),
    )
    reinstall_signal_handlers()
    resolved_degrees(context, args)
    return args


def resolved_degrees(context: WorkloadContext, args: TrainingArguments) -> dict[str, int]:
    """Return the data, sharding, tensor and pipeline degrees that PaddleNLP set up; raise ValueError if one differs from the request.

    PaddleNLP 3.0.0b4 sets a degree to -1 when it sets up no such group (one
    process, or plain data parallelism), which counts as 1 here. The runner
    rejects degrees that do not fit the processes before the run starts
    (agent.runner.overrides.check_parallel_degrees), so a difference here means
    that PaddleNLP changed a degree on its own, and the run must not record it.
    """
    resolved = {name: max(1, int(getattr(args, f"{name}_parallel_degree"))) for name in ("data", "sharding", "tensor", "pipeline")}
    parallel = parallel_arguments(context.free)
    requested = {"tensor": parallel["tensor_parallel_degree"], "pipeline": parallel["pipeline_parallel_degree"]}
    sharding = {**context.fixed, **context.free}.get("sharding_parallel_degree")
    if sharding is not None and int(sharding) >= 1:
        requested["sharding"] = int(sharding)
    differing = [f"{name} {requested[name]} requested, {resolved[name]} set up" for name in requested if requested[name] != resolved[name]]
    if differing:
        raise ValueError(f"PaddleNLP set up other parallel degrees than requested in {args.world_size} process(es): "
                         f"{'; '.join(differing)}; start as many processes as the degrees need")
    return resolved


def sharding_used(context: WorkloadContext, args: TrainingArguments) -> dict[str, str]:
    """Return the sharding stage PaddleNLP set up ("" for none) and the one the pack and --set asked for.

    PaddleNLP drops the sharding stage when the run has one process or a
    sharding degree of 1, so the record must not repeat the request as if it ran.
    """
    requested = parallel_arguments(context.free)["sharding"]
    used = " ".join(str(getattr(option, "value", option)) for option in args.sharding)
    if used != requested:
        message = (_("{workload}: sharding {requested!r} was requested, but PaddleNLP set up {used!r}, because the sharding degree is {degree}")
                   if used else _("{workload}: sharding {requested!r} was requested, but PaddleNLP set up no sharding, because the sharding degree is {degree}"))
        logger.warning(message.format(workload=context.workload_id, requested=requested, used=used, degree=max(1, int(args.sharding_parallel_degree))))
    return {"sharding": used, "sharding_requested": requested}


def check_pipeline_support(context: WorkloadContext, degree: int) -> None:
    """Raise ValueError when the workload cannot run with pipeline parallelism of `degree`.

    Only pretraining runs pipelined: fine-tuning decodes the dev sets with
    `generate()`, which PaddleNLP's *Pipe classes do not have, and weights its
    loss per label token in `compute_loss`, which the pipeline step skips.
    """
    if degree == 1:
        return
    architecture = context.model_preset["architecture"]
    kind = context.spec["kind"]
    if kind != "pretrain":
        raise ValueError(
            f"pipeline_parallel_degree {degree} is not supported for {kind} workloads such as {context.workload_id} "
            f"({architecture}): the agent decodes their dev sets with the plain model's generate(); set it to 1")
    pipeline_class(architecture)


def pipeline_settings(context: WorkloadContext, degree: int) -> dict[str, Any]:
    """Return the pack's pass-through TrainingArguments, with what pipeline parallelism needs on the CPU added.

    On the CPU, Paddle's collectives run on gloo, whose ProcessGroup has no
    send or recv on the calculation stream (Paddle 3.3.1). The pipeline's
    default batched p2p uses exactly those, so the agent adds
    `disable_batch_p2p_comm` to `pipeline_parallel_config` there, and Paddle
    sends each tensor with plain isend and irecv instead.
    """
    settings = passed_through(context.fixed, context.free)
    if degree > 1 and context.device == "cpu":
        options = str(settings.get("pipeline_parallel_config", "")).split()
        if "disable_batch_p2p_comm" not in options:
            settings["pipeline_parallel_config"] = " ".join([*options, "disable_batch_p2p_comm"])
    return settings


def reinstall_signal_handlers() -> None:
    """Give SIGTERM and SIGINT back to Python's handlers.

    Building TrainingArguments starts Paddle's native runtime, which installs
    its own C-level SIGTERM handler that ends the process at once. Setting
    the same Python handlers again restores them, so that a SIGTERM stops the
    run through the runner, which writes the stop event.
    """
    for number in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(number)
        if handler is not None:
            signal.signal(number, handler)


def accumulation_steps(fixed: dict[str, Any], micro_batch: int, data_ranks: int) -> int:
    """Return the micro-batches per optimizer step that make up the pack's global batch."""
    global_batch = int(fixed["global_batch_size"])
    if global_batch % (micro_batch * data_ranks):
        raise ValueError(
            f"global_batch_size {global_batch} is not a multiple of per_device_train_batch_size {micro_batch} x "
            f"{data_ranks} data-parallel ranks: choose a micro-batch that divides it"
        )
    return global_batch // (micro_batch * data_ranks)


def parallel_model_settings(args: TrainingArguments) -> dict[str, Any]:
    """Return the model config fields that PaddleNLP's tensor and pipeline parallelism and recompute need.

    agent.workloads.models builds the architecture's *Pipe class when
    `pipeline_parallel_degree` is above 1.
    """
    settings = {
        "tensor_parallel_degree": args.tensor_parallel_degree,
        "tensor_parallel_rank": args.tensor_parallel_rank,
        "pipeline_parallel_degree": args.pipeline_parallel_degree,
        "recompute": args.recompute,
    }
    if args.tensor_parallel_degree > 1 and args.device == "cpu":
        # Paddle 3.3.1 has no CPU kernel of the vocabulary-parallel cross-entropy (c_softmax_with_cross_entropy),
        # so on the CPU the LM head gathers the whole logits and the plain cross-entropy reads them.
        settings["tensor_parallel_output"] = False
    return settings


def train(context: WorkloadContext, args: TrainingArguments, model, dataset, collator,
          trainer_class=None) -> tuple[Trainer, dict[str, Any]]:
    """Train `model` on `dataset` with the Trainer. Return the trainer and the settings it used.

    `trainer_class` replaces RecordingTrainer with a subclass of it (or a partial of one).
    """
    # The Trainer prints every argument and a line per step, so StepRecorder reports progress instead.
    paddlenlp_logger.set_level("WARNING")
    recorder = StepRecorder(context, args)
    trainer = (trainer_class or RecordingTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        # The schedule decays over the steps that the Trainer runs, which fine-tuning may derive from num_train_epochs.
        optimizers=(None, warmup_cosine_schedule({**context.fixed, "max_steps": args.max_steps})),
        callbacks=[recorder],
        recorder=recorder,
    )
    resume = str(context.resume_from) if context.resume_from else None
    if resume:
        logger.info(_("{workload}: resuming from {checkpoint}").format(workload=context.workload_id, checkpoint=resume))
    trainer.train(resume_from_checkpoint=resume)
    return trainer, {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "data_parallel_ranks": args.dataset_world_size,
        "world_size": args.world_size,
        **parallel_arguments(context.free),
        **sharding_used(context, args),
        # The degrees of PaddleNLP's hybrid-parallel topology as this run set them up, equal to the requested ones.
        "parallel_degrees": resolved_degrees(context, args),
        "max_grad_norm": args.max_grad_norm,
        "checkpoint_steps": context.fixed.get("checkpoint_steps"),
        "passed_through": passed_through(context.fixed, context.free),
        "model_class": type(model).__name__,
        "pipeline_parallel_config": args.pipeline_parallel_config,
        "optimizer": "AdamW (PaddleNLP Trainer default)",
        "weight_decay_parameters": "all but biases and norms, by their own names, also the slices of sharding stage 3",
        "learning_rate_schedule": "LambdaDecay: linear warmup, then decay to min_learning_rate",
    }


SLICE_PREFIX = "slice@"


def decay_by_own_name(decides):
    """Return the weight-decay rule `decides`, applied to a parameter's name without sharding stage 3's `slice@` prefix.

    Stage 3 hands the optimizer a slice of each parameter it shards, named
    `slice@<name>`. PaddleNLP's Trainer lists the parameters to decay by
    their plain names, so without this the slices get no weight decay.
    """
    def applies(name: str) -> bool:
        return decides(name.removeprefix(SLICE_PREFIX))

    applies.by_own_name = True
    return applies


class RecordingTrainer(Trainer):
    """PaddleNLP's Trainer with each micro-batch handed to a StepRecorder, a fixed data order, and weight decay
    chosen by each parameter's own name."""

    def __init__(self, *args, recorder: "StepRecorder", **kwargs):
        super().__init__(*args, **kwargs)
        self.recorder = recorder

    def _get_train_sampler(self):
        # Batches come in dataset order, split over the data-parallel ranks. The
        # workloads fix that order when they build the data. On resume the
        # Trainer moves this sampler past the samples already consumed.
        return DistributedBatchSampler(
            self.train_dataset,
            batch_size=self.args.per_device_train_batch_size,
            num_replicas=self.args.dataset_world_size,
            rank=self.args.dataset_rank,
            shuffle=False,
            drop_last=self.args.dataloader_drop_last,
        )

    def create_optimizer(self, lr_scheduler=None):
        optimizer = super().create_optimizer(lr_scheduler)
        decides = getattr(optimizer, "_apply_decay_param_fun", None)
        if decides is not None and not getattr(decides, "by_own_name", False):
            optimizer._apply_decay_param_fun = decay_by_own_name(decides)
        return optimizer

    def training_step(self, model, inputs, **kwargs):
        # Counted here and not in on_load_data_end, which the Trainer also calls for the batches a resume skips.
        self.recorder.add_micro_batch(inputs)
        loss = super().training_step(model, inputs, **kwargs)
        self.recorder.add_micro_batch_loss(loss.item())
        return loss

    def _check_loss_valid(self, loss):
        # NOTE: the stock check raises on a NaN or infinite loss. The
        # certification keeps training and records the value, so that the
        # verdict engine reads the NaN in steps.jsonl.
        return None


class TimedStepRecorder(TrainerCallback):
    """Base of the Trainer callbacks that append one `steps.jsonl` record per optimizer step (global rank 0 only).

    It times each step from on_step_begin to on_step_end (forward, backward
    and the optimizer update), with a device synchronisation before each
    clock reading. It also reads the learning rate before the update and
    the global gradient norm before clipping (see agent.workloads.grad_norm),
    writes the record that `step_record` returns, logs progress and sends
    the heartbeat. Subclasses count their micro-batches between
    `reset_counts` calls.
    """

    def __init__(self, context: WorkloadContext, cards: int, max_steps: int):
        self.context = context
        self.path = context.out_dir / "steps.jsonl"
        self.cards = cards
        self.max_steps = max_steps
        self.gradient_norm = None
        self._reset()

    def _reset(self) -> None:
        self.loss_sum = 0.0
        self.grad_norm = None
        self.learning_rate = None
        self.started = None
        self.reset_counts()

    def reset_counts(self) -> None:
        """Clear the subclass's per-step counts."""

    def add_micro_batch_loss(self, value: float) -> None:
        # training_step already divides by the accumulation steps, so the sum is the rank's step mean. Under
        # pipeline parallelism training_step returns 0 for every micro-batch but the last, and for the last the
        # step mean that the last stage computed and broadcast to every stage, so the sum is that mean too.
        self.loss_sum += value

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize(self.context.device)
        self.started = time.monotonic()

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        # The Trainer has built and wrapped its optimizer by now, so the clip in use is the one it will run.
        self.gradient_norm = GradientNormCapture(optimizer)
        source = self.gradient_norm.source
        message = (_("{workload}: grad_norm is computed by the agent") if source == "agent"
                   else _("{workload}: grad_norm comes from {source}"))
        logger.info(message.format(workload=self.context.workload_id, source=source))

    def on_optimizer_begin(self, args, state, control, optimizer=None, model=None, **kwargs):
        self.learning_rate = float(optimizer.get_lr())
        self.gradient_norm.before_step(model, args.use_hybrid_parallel)

    def on_optimizer_end(self, args, state, control, scaler=None, **kwargs):
        self.grad_norm = self.gradient_norm.take()
        if self.grad_norm is None and scaler is not None and step_skipped(scaler):
            # NOTE: the float16 loss scaler found Inf or NaN in the gradients and skipped the optimizer, clip
            # included, so the norm is not finite. Which of the two is not known, and NaN is recorded.
            self.grad_norm = math.nan

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.context.device)
        seconds = time.monotonic() - self.started
        self.gather(args)
        if self.context.is_writer:
            record = self.step_record(args, state, seconds)
            append_jsonl(self.path, [record])
            self._report(record)
        self._reset()

    def gather(self, args) -> None:
        """Combine the step's counts over the ranks that read different data, before the record is written."""

    def step_record(self, args, state, seconds: float) -> dict[str, Any]:
        raise NotImplementedError

    def _report(self, record: dict[str, Any]) -> None:
        step = record["step"]
        if step == 1 or step % PROGRESS_EVERY_STEPS == 0 or step == self.max_steps:
            logger.info(_("{workload} step {step}/{steps} loss {loss} lr {lr:.3g} {seconds:.3f} s/step").format(
                workload=self.context.workload_id, step=step, steps=self.max_steps, loss=record["loss"],
                lr=record["learning_rate"], seconds=record["step_seconds"]))
        self.context.send_heartbeat("training", step=step)


class StepRecorder(TimedStepRecorder):
    """The language models' step recorder: loss, token counts and tokens per second per card.

    effective_tokens counts label positions that enter the loss and
    padded_tokens every position of the padded batch, summed over the
    data-parallel ranks, as is the loss before it is divided by their number.
    The tensor-parallel ranks and the pipeline stages of one data rank read
    the same batches, so they are not summed.
    """

    def __init__(self, context: WorkloadContext, args: TrainingArguments):
        self.data_ranks = args.dataset_world_size
        super().__init__(context, args.world_size, args.max_steps)

    def reset_counts(self) -> None:
        self.effective_tokens = 0
        self.padded_tokens = 0

    def add_micro_batch(self, inputs) -> None:
        if "labels" not in inputs:
            return
        labels = inputs["labels"]
        self.effective_tokens += int((labels != IGNORE_INDEX).sum().item())
        self.padded_tokens += int(labels.shape[0] * labels.shape[1])

    def gather(self, args) -> None:
        self.loss_sum, self.effective_tokens, self.padded_tokens = self._sum_over_data_ranks(args)

    def on_save(self, args, state, control, **kwargs):
        # The Trainer calls this on every rank after that rank's checkpoint files are written. The barrier waits
        # for the other ranks' files too, so the event, which --resume trusts, marks a complete checkpoint.
        barrier(self.context)
        if self.context.is_writer and self.context.events is not None:
            self.context.events("checkpoint", workload=self.context.workload_id, step=state.global_step,
                                path=f"checkpoints/{self.context.workload_id}/checkpoint-{state.global_step}")

    def _sum_over_data_ranks(self, args) -> tuple[float, int, int]:
        values = [self.loss_sum, float(self.effective_tokens), float(self.padded_tokens)]
        if self.data_ranks > 1:
            totals = paddle.to_tensor(values, dtype="float64")
            for group in data_groups(args):
                paddle.distributed.all_reduce(totals, group=group)
            values = totals.numpy().tolist()
        return values[0] / self.data_ranks, int(values[1]), int(values[2])

    def step_record(self, args, state, seconds: float) -> dict[str, Any]:
        return {
            "step": state.global_step,
            "loss": encode_float(self.loss_sum),
            "learning_rate": self.learning_rate,
            "grad_norm": encode_float(self.grad_norm),
            "consumed_samples": state.consumed_samples,
            "effective_tokens": self.effective_tokens,
            "padded_tokens": self.padded_tokens,
            "step_seconds": seconds,
            "tokens_per_second_per_card": self.effective_tokens / seconds / self.cards,
            "cards": self.cards,
        }


def data_groups(args: TrainingArguments) -> list:
    """Return the communication groups whose ranks read different data: data-parallel, then sharding."""
    if not args.use_hybrid_parallel:
        return [None]
    from paddle.distributed import fleet

    hcg = fleet.get_hybrid_communicate_group()
    groups = []
    if hcg.get_data_parallel_world_size() > 1:
        groups.append(hcg.get_data_parallel_group())
    if hcg.get_sharding_parallel_world_size() > 1:
        groups.append(hcg.get_sharding_parallel_group())
    return groups


def step_skipped(scaler) -> bool:
    """Return whether the float16 loss scaler skipped the latest optimizer step (Paddle 2.6 spells the flag `_cache_founf_inf`)."""
    return bool(getattr(scaler, "_cache_found_inf", getattr(scaler, "_cache_founf_inf", False)))
