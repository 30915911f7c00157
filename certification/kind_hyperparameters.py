"""The hyperparameter keys that each workload kind reads, and the values that it cannot run with.

certification.hyperparameters checks a value's type and range whatever the
workload. KIND_HYPERPARAMETERS adds what depends on the workload's `kind`:

- A key that the kind does not read is rejected, because a run would ignore
  it while config.json records it as if it had shaped the run.
- A value that the kind's workload rejects at start is rejected before the
  run. For example, pretraining decays the learning rate by cosine or
  linearly, so `lr_scheduler_type: constant` fails there.
- A key in the section that the kind's code does not read it from is
  rejected. The agent reads the parallel layout only from `free` and the
  learning rate only from `fixed`, so elsewhere the key would be ignored.
- A kind that trains for a set length needs exactly one of its length keys
  (`max_steps`, or `num_train_epochs` for fine-tuning) in `fixed`.

The key lists follow the workload code in agent/workloads/ and
agent/inference/. certification/ imports neither the agent nor PaddleNLP, so
the lists below that copy a name list from them are compared with the
original by tests/certification/test_hyperparameters.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from certification.hyperparameters import HYPERPARAMETER_RULES, ValueRule, one_of


# The fields of PaddleNLP 3.0.0b4's TrainingArguments (paddlenlp.trainer.TrainingArguments).
TRAINING_ARGUMENTS_FIELDS = frozenset({
    "adam_beta1", "adam_beta2", "adam_epsilon", "amp_custom_black_list", "amp_custom_white_list", "amp_master_grad",
    "auto_parallel_resume_form_hybrid_parallel", "bf16", "bf16_full_eval", "ckpt_quant_stage",
    "context_parallel_degree", "count_trained_tokens", "data_parallel_config", "dataloader_drop_last",
    "dataloader_num_workers", "ddp_find_unused_parameters", "device", "disable_tqdm", "distributed_dataloader",
    "do_eval", "do_export", "do_predict", "do_train", "enable_auto_parallel", "eval_accumulation_steps",
    "eval_steps", "evaluation_strategy", "expert_max_capacity", "expert_min_capacity", "expert_parallel_degree",
    "expert_tensor_parallel_degree", "flatten_param_grads", "force_reshard_pp", "fp16", "fp16_full_eval",
    "fp16_opt_level", "fuse_sequence_parallel_allreduce", "gradient_accumulation_steps", "greater_is_better",
    "hybrid_parallel_topo_order", "ignore_data_skip", "ignore_load_lr_and_optim", "ignore_save_lr_and_optim",
    "label_names", "lazy_data_processing", "learning_rate", "load_best_model_at_end", "load_sharded_model",
    "local_rank", "log_on_each_node", "logging_dir", "logging_first_step", "logging_steps", "logging_strategy",
    "lr_end", "lr_scheduler_type", "max_evaluate_steps", "max_grad_norm", "max_steps", "metric_for_best_model",
    "metrics_output_path", "minimum_eval_times", "no_cuda", "num_cycles", "num_train_epochs", "offload_optim",
    "optim", "ordered_save_group_size", "output_dir", "output_signal_dir", "overwrite_output_dir", "pad_token_id",
    "past_index", "pdc_download_ckpt", "pdc_download_timeout", "per_device_eval_batch_size",
    "per_device_train_batch_size", "pipeline_parallel_config", "pipeline_parallel_degree", "power",
    "prediction_loss_only", "recompute", "refined_recompute", "release_grads", "remove_unused_columns",
    "report_to", "resume_from_checkpoint", "run_name", "save_on_each_node", "save_sharded_model",
    "save_sharding_stage1_model_include_freeze_params", "save_steps", "save_strategy", "save_total_limit",
    "scale_loss", "seed", "sep_parallel_degree", "sequence_parallel", "sequence_parallel_config", "sharding",
    "sharding_comm_buffer_size_MB", "sharding_degree", "sharding_parallel_config", "sharding_parallel_degree",
    "sharding_parallel_mesh_dimension", "skip_data_intervals", "skip_memory_metrics", "skip_profile_timer",
    "split_inputs_sequence_dim", "tensor_parallel_config", "tensor_parallel_degree", "to_static",
    "unified_checkpoint", "unified_checkpoint_config", "use_async_save", "use_expert_parallel", "wandb_api_key",
    "wandb_http_proxy", "warmup_ratio", "warmup_steps", "weight_decay",
})

# A copy of agent.workloads.training.SET_BY_AGENT: the TrainingArguments that the agent sets itself.
# A pack's value of one of them is either read by the agent (then it is in the kind's `reads`) or overwritten.
SET_BY_AGENT = frozenset({
    "output_dir", "device", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "lr_scheduler_type", "warmup_steps", "min_learning_rate", "weight_decay", "max_grad_norm",
    "seed", "logging_steps", "save_strategy", "save_steps", "save_total_limit", "report_to", "disable_tqdm",
    "dataloader_num_workers", "remove_unused_columns", "tensor_parallel_degree", "pipeline_parallel_degree",
    "sharding", "recompute", "num_train_epochs",
})

# The TrainingArguments fields that agent.workloads.training.passed_through hands to PaddleNLP as the pack sets them.
PASSED_TO_TRAINER = TRAINING_ARGUMENTS_FIELDS - SET_BY_AGENT

# A copy of agent.workloads.models.MODEL_CONFIG_KEYS: keys set on the PaddleNLP model config.
MODEL_CONFIG_KEYS = ("use_flash_attention", "use_fused_rms_norm", "use_fused_rope", "recompute_granularity",
                     "sequence_parallel", "fuse_attention_qkv", "fuse_attention_ffn")


@dataclass(frozen=True)
class KindHyperparameters:
    """The hyperparameters that one workload kind accepts.

    `reads` are the keys that the kind's workload code reads. `recorded` are
    keys that shipped packs set to describe a run, such as the PaddleNLP
    settings that the standard's pack copies from the files it cites.
    config.json records them, but the run does not act on them. With
    `passes_to_trainer`, every TrainingArguments field in PASSED_TO_TRAINER is
    accepted too. `values` replaces HYPERPARAMETER_RULES for the keys whose
    values this kind narrows. `sections` maps each key that the kind's code
    reads from one section only to that section, "fixed" or "free". Other
    accepted keys may be in either. `length_keys` are the keys that set how
    long the kind trains, of which `fixed` must contain exactly one.
    """

    reads: frozenset[str]
    recorded: frozenset[str] = frozenset()
    passes_to_trainer: bool = False
    values: Mapping[str, ValueRule] = field(default_factory=dict)
    sections: Mapping[str, str] = field(default_factory=dict)
    length_keys: tuple[str, ...] = ()

    def accepts_key(self, key: str) -> bool:
        return key in self.reads or key in self.recorded or (self.passes_to_trainer and key in PASSED_TO_TRAINER)

    def listed_keys(self) -> list[str]:
        """Return the keys read or recorded, sorted, for messages; the TrainingArguments fields are not listed."""
        return sorted(self.reads | self.recorded)


def _only(value_type: str, value: bool | int) -> ValueRule:
    return ValueRule(value_type, "only", only=value)


# Read by agent.workloads.training for every kind that PaddleNLP's Trainer trains, and by
# agent.workloads.models for the model's weights dtype, dropout and kernel choices.
TRAINER_READS = frozenset({
    "learning_rate", "lr_scheduler_type", "warmup_steps", "min_learning_rate", "max_steps", "global_batch_size",
    "max_seq_length", "seed", "dropout", "weight_decay", "max_grad_norm", "checkpoint_steps", "checkpoint_keep",
    "per_device_train_batch_size", "tensor_parallel_degree", "pipeline_parallel_degree", "sharding_parallel_degree",
    "sharding_stage", "sharding", "recompute", "bf16", "fp16", "fp16_opt_level", *MODEL_CONFIG_KEYS,
})
# The fine-tuning kinds also decode the dev sets and can train for a number of epochs (agent.workloads.finetune).
FINETUNE_READS = TRAINER_READS | {"max_new_tokens", "eval_batch_size", "eval_samples_per_dataset", "num_train_epochs"}
# NOTE: gradient_accumulation_steps is a TrainingArguments field that the agent derives from
# global_batch_size and the micro-batch, so the pack's value is only recorded.
TRAINER_RECORDED = frozenset({"gradient_accumulation_steps"})
# Fine-tuning keys that the standard's pack copies from the PaddleNLP argument files it cites.
FINETUNE_RECORDED = TRAINER_RECORDED | {"decode_strategy", "src_length", "zero_padding"}

# The section that the workload code reads each key from: `context.fixed` or `context.free` in
# agent/workloads/, and the runner's checks in agent/runner/overrides.py and agent/runner/checkpoints.py.
# Keys read from both sections together, such as the model config keys, bf16 and
# sharding_parallel_degree, are in neither list.
TRAINER_FIXED = frozenset({
    "learning_rate", "lr_scheduler_type", "warmup_steps", "min_learning_rate", "max_steps", "global_batch_size",
    "max_seq_length", "seed", "dropout", "weight_decay", "max_grad_norm", "checkpoint_steps",
})
TRAINER_FREE = frozenset({
    "per_device_train_batch_size", "tensor_parallel_degree", "pipeline_parallel_degree", "sharding_stage", "sharding",
    "recompute", "checkpoint_keep",
})
FINETUNE_FIXED = TRAINER_FIXED | {"num_train_epochs", "max_new_tokens", "eval_samples_per_dataset"}
FINETUNE_FREE = TRAINER_FREE | {"eval_batch_size"}
# Fine-tuning trains for max_steps, or for num_train_epochs passes over its train pairs as PaddleNLP's
# SFT and LoRA argument files set it. Pretraining and SD fine-tuning read max_steps only.
FINETUNE_LENGTH_KEYS = ("max_steps", "num_train_epochs")


def _sections(fixed: frozenset[str], free: frozenset[str]) -> dict[str, str]:
    return {**{key: "fixed" for key in fixed}, **{key: "free" for key in free}}


# agent.workloads.training.warmup_cosine_schedule raises ValueError for any other schedule.
DECAYING_SCHEDULES = one_of("cosine", "linear")
# SD fine-tuning has its own constant schedule, and it shares the cosine and linear ones with the LLM kinds.
SD_SCHEDULES = one_of("constant", "cosine", "linear")
# Fine-tuning decodes the dev sets with generate(), which PaddleNLP's pipeline (*Pipe) models do not have.
NO_PIPELINE = _only("integer", 1)
SD_SFT_READS = frozenset({
    "learning_rate", "lr_scheduler_type", "warmup_steps", "min_learning_rate", "max_steps", "global_batch_size",
    "per_device_train_batch_size", "weight_decay", "max_grad_norm", "seed", "resolution", "max_seq_length",
    "random_flip", "center_crop", "inference_scheduler", "num_inference_steps", "guidance_scale",
})
SD_INFER_READS = frozenset({"resolution", "max_seq_length", "seed", "inference_scheduler", "num_inference_steps",
                            "guidance_scale"})

KIND_HYPERPARAMETERS: dict[str, KindHyperparameters] = {
    "pretrain": KindHyperparameters(
        reads=TRAINER_READS | {"validation_sequences"},
        recorded=TRAINER_RECORDED | {"virtual_pp_degree"},
        passes_to_trainer=True,
        values={"lr_scheduler_type": DECAYING_SCHEDULES},
        sections=_sections(TRAINER_FIXED | {"validation_sequences"}, TRAINER_FREE),
        length_keys=("max_steps",),
    ),
    "sft": KindHyperparameters(
        reads=FINETUNE_READS,
        recorded=FINETUNE_RECORDED,
        passes_to_trainer=True,
        values={"lr_scheduler_type": DECAYING_SCHEDULES, "pipeline_parallel_degree": NO_PIPELINE},
        sections=_sections(FINETUNE_FIXED, FINETUNE_FREE),
        length_keys=FINETUNE_LENGTH_KEYS,
    ),
    "lora": KindHyperparameters(
        reads=FINETUNE_READS | {"lora_rank", "lora_alpha"},
        # The standard's pack copies `lora: true` from PaddleNLP's LoRA argument file. A lora workload
        # always trains LoRA adapters, so only true is accepted.
        recorded=FINETUNE_RECORDED | {"lora"},
        passes_to_trainer=True,
        values={"lr_scheduler_type": DECAYING_SCHEDULES, "pipeline_parallel_degree": NO_PIPELINE,
                "lora": _only("boolean", True)},
        sections=_sections(FINETUNE_FIXED | {"lora_rank", "lora_alpha"}, FINETUNE_FREE),
        length_keys=FINETUNE_LENGTH_KEYS,
    ),
    # agent.workloads.inference and the agent's own server (agent.inference.server). The model config
    # keys and dropout shape the model that the server loads; the parallel degrees are checked by the runner.
    "infer": KindHyperparameters(
        reads=frozenset({
            "seed", "max_new_tokens", "calibration_samples", "decode_strategy", "scheduler", "max_batch_size",
            "batch_wait_ms", "tensor_parallel_degree", "pipeline_parallel_degree", "sharding_parallel_degree",
            "dropout", *MODEL_CONFIG_KEYS,
        }),
        # The agent's own server reads none of these, because the data type comes from the workload's `data_type`.
        recorded=frozenset({"quant_type", "dtype", "block_attn", "max_concurrency", "max_seq_length"}),
        sections=_sections(
            frozenset({"seed", "max_new_tokens", "calibration_samples"}),
            frozenset({"scheduler", "max_batch_size", "batch_wait_ms", "tensor_parallel_degree",
                       "pipeline_parallel_degree", "sharding_parallel_degree"})),
    ),
    # agent.workloads.sd and agent.workloads.sd_training. The UNet's TrainingArguments get no pass-through
    # fields, and random flips and crops would break the loss alignment.
    "sd_sft": KindHyperparameters(
        reads=SD_SFT_READS,
        # NOTE: the standard's pack sets recompute for SD fine-tuning, but the agent's UNet training does not recompute.
        recorded=frozenset({"recompute"}),
        values={"lr_scheduler_type": SD_SCHEDULES, "random_flip": _only("boolean", False),
                "center_crop": _only("boolean", True)},
        sections=_sections(SD_SFT_READS - {"per_device_train_batch_size"}, frozenset({"per_device_train_batch_size"})),
        length_keys=("max_steps",),
    ),
    # agent.workloads.sd_images generates each prompt alone, so batch_size records that and must be 1.
    "sd_infer": KindHyperparameters(
        reads=SD_INFER_READS,
        recorded=frozenset({"batch_size", "dtype"}),
        values={"batch_size": _only("integer", 1)},
        sections=_sections(SD_INFER_READS, frozenset()),
    ),
}


def value_rule(kind: str, key: str) -> ValueRule | None:
    """Return the rule for `key` in a workload of `kind`: the kind's own rule, else HYPERPARAMETER_RULES, else None."""
    rules = KIND_HYPERPARAMETERS.get(kind)
    if rules is not None and key in rules.values:
        return rules.values[key]
    return HYPERPARAMETER_RULES.get(key)


@dataclass(frozen=True)
class HyperparameterProblem:
    """One hyperparameter that a workload cannot run with: a stable `code`, the English message and its parts."""

    code: str
    message: str
    values: tuple[tuple[str, str], ...]


def hyperparameter_problem(workload_id: str, kind: str, key: str, value: Any, value_text: str,
                           section: str | None = None) -> HyperparameterProblem | None:
    """Return the problem with `key: value` in workload `workload_id` of `kind`, or None when the workload can run with it.

    `value_text` is the value as the pack or `--set` writes it, for the message. `section` is "fixed" or
    "free" where the key is set in the pack; None skips the check of the section.
    """
    rules = KIND_HYPERPARAMETERS.get(kind)
    if rules is not None and not rules.accepts_key(key):
        return _unread_problem(workload_id, kind, key, rules)
    expected_section = rules.sections.get(key) if rules is not None else None
    if section is not None and expected_section is not None and section != expected_section:
        return HyperparameterProblem(
            "hyperparameter_section",
            f"workload {workload_id}: {key} is under {section}, but {kind} workloads read it only from "
            f"{expected_section}; move it to {expected_section}",
            (("workload", workload_id), ("key", key), ("section", section), ("expected_section", expected_section),
             ("workload_kind", kind)))
    rule = value_rule(kind, key)
    if rule is None or rule.accepts(value):
        return None
    expected = rule.expected()
    values = (("workload", workload_id), ("key", key), ("value", value_text), ("expected", expected))
    if rules is not None and key in rules.values:
        return HyperparameterProblem(
            "hyperparameter_invalid",
            f"workload {workload_id}: {key} is {value_text}, but {kind} workloads can only run with {expected}",
            (*values, ("workload_kind", kind)))
    return HyperparameterProblem("hyperparameter_invalid", f"workload {workload_id}: {key} is {value_text}, but it must be {expected}", values)


def _unread_problem(workload_id: str, kind: str, key: str, rules: KindHyperparameters) -> HyperparameterProblem:
    keys = ", ".join(rules.listed_keys())
    values = (("workload", workload_id), ("key", key), ("workload_kind", kind), ("keys", keys))
    if rules.passes_to_trainer:
        return HyperparameterProblem(
            "hyperparameter_unread",
            f"workload {workload_id}: {kind} workloads do not read {key}; remove it, or use one of {keys}, "
            "or a field of PaddleNLP's TrainingArguments that the agent does not set itself",
            (*values, ("trainer", "TrainingArguments")))
    return HyperparameterProblem(
        "hyperparameter_unread",
        f"workload {workload_id}: {kind} workloads do not read {key}; remove it, or use one of {keys}",
        values)


def training_length_problem(workload_id: str, kind: str, fixed: Mapping[str, Any]) -> HyperparameterProblem | None:
    """Return the problem when `fixed` does not contain exactly one of the keys that set how long `kind` trains."""
    rules = KIND_HYPERPARAMETERS.get(kind)
    if rules is None or not rules.length_keys:
        return None
    present = [key for key in rules.length_keys if key in fixed]
    if len(present) == 1:
        return None
    keys = ", ".join(rules.length_keys)
    values = (("workload", workload_id), ("workload_kind", kind), ("keys", keys))
    if not present:
        return HyperparameterProblem(
            "training_length_missing",
            f"workload {workload_id}: {kind} workloads need exactly one of {keys} under fixed, to set how long they train",
            values)
    return HyperparameterProblem(
        "training_length_ambiguous",
        f"workload {workload_id}: fixed sets {', '.join(present)}, but {kind} workloads train for exactly one of them; "
        "keep one",
        (*values, ("present", ", ".join(present))))


def is_recorded_only(kind: str, key: str) -> bool:
    """Return whether workloads of `kind` record `key` in config.json without applying it to the run."""
    rules = KIND_HYPERPARAMETERS.get(kind)
    if rules is None or key not in rules.recorded:
        return False
    return key not in rules.reads and not (rules.passes_to_trainer and key in PASSED_TO_TRAINER)
