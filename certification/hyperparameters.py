"""The types and ranges of the rule pack hyperparameters that the agent reads.

A pack sets each workload's hyperparameters under `fixed` (the vendor may not
change them) or `free` (the vendor may, with `--set`). `validate-pack` checks
both against HYPERPARAMETER_RULES, so that a value such as a negative batch
size is rejected before a run starts instead of failing inside PaddleNLP.
These rules hold for every workload kind. certification.kind_hyperparameters
rejects the keys that a kind does not read and narrows some rules per kind.
A key that a kind accepts and that is not in this table, such as a field of
PaddleNLP's TrainingArguments that the agent passes on, is not type-checked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


# English descriptions of accepted values, by the name a ValueRule gives in `description`. The agent
# shows them in the user's language through the same strings in agent.commands.validate_pack.
EXPECTED_TEXTS = {
    "boolean": "true or false",
    "one_of": "one of {choices}",
    "sharding": "empty, or stage1, stage2, stage3 or offload, several separated by spaces",
    "integer_at_least": "an integer of at least {minimum}",
    "integer_range": "an integer from {minimum} to {maximum}",
    "number_above": "a number above {above}",
    "number_at_least": "a number of at least {minimum}",
    "number_at_least_below": "a number of at least {minimum} and below {below}",
    "only": "exactly {only}",
}


@dataclass(frozen=True)
class ValueRule:
    """The values one hyperparameter accepts: a YAML type, and a range or a list of choices.

    `minimum` and `maximum` are inclusive; `above` and `below` are exclusive.
    `pattern` is a regular expression that a whole string value must match.
    `only`, when set, is the one value accepted, such as false for a switch that a workload kind cannot turn on.
    `description` names the EXPECTED_TEXTS entry that describes these values.
    """

    type: str  # "integer", "number", "boolean" or "string"
    description: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ""
    only: bool | int | None = None

    def accepts(self, value: Any) -> bool:
        if self.only is not None and value != self.only:
            return False
        if self.type == "boolean":
            return isinstance(value, bool)
        if self.type == "string":
            return isinstance(value, str) and self._string_accepted(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "integer" and not isinstance(value, int):
            return False
        return math.isfinite(value) and self._in_range(value)

    def _string_accepted(self, value: str) -> bool:
        if self.choices:
            return value in self.choices
        return not self.pattern or re.fullmatch(self.pattern, value) is not None

    def _in_range(self, value: float) -> bool:
        if self.minimum is not None and value < self.minimum:
            return False
        if self.maximum is not None and value > self.maximum:
            return False
        if self.above is not None and value <= self.above:
            return False
        return self.below is None or value < self.below

    def expected(self, texts: dict[str, str] = EXPECTED_TEXTS) -> str:
        """Describe the accepted values, such as "an integer of at least 1", with `texts` in place of EXPECTED_TEXTS."""
        return texts[self.description].format(
            choices=", ".join(self.choices), minimum=_number_text(self.minimum), maximum=_number_text(self.maximum),
            above=_number_text(self.above), below=_number_text(self.below), only=_only_text(self.only),
        )


def _only_text(value: bool | int | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _number_text(number: float | None) -> str:
    if number is None:
        return ""
    return str(int(number)) if float(number).is_integer() else str(number)


COUNT = ValueRule("integer", "integer_at_least", minimum=1)
NON_NEGATIVE_INTEGER = ValueRule("integer", "integer_at_least", minimum=0)
POSITIVE_NUMBER = ValueRule("number", "number_above", above=0)
NON_NEGATIVE_NUMBER = ValueRule("number", "number_at_least", minimum=0)
BOOLEAN = ValueRule("boolean", "boolean")


def one_of(*choices: str) -> ValueRule:
    return ValueRule("string", "one_of", choices=choices)


# Hyperparameter -> the values the agent, or PaddleNLP where the agent passes the key on, can use.
HYPERPARAMETER_RULES: dict[str, ValueRule] = {
    # Steps, sizes and counts.
    "global_batch_size": COUNT,
    "per_device_train_batch_size": COUNT,
    "per_device_eval_batch_size": COUNT,
    "eval_batch_size": COUNT,
    "batch_size": COUNT,
    "gradient_accumulation_steps": COUNT,
    "max_steps": COUNT,
    "num_train_epochs": COUNT,
    "checkpoint_steps": COUNT,
    "checkpoint_keep": COUNT,
    "max_seq_length": COUNT,
    "max_new_tokens": COUNT,
    "eval_samples_per_dataset": COUNT,
    "validation_sequences": COUNT,
    "calibration_samples": COUNT,
    "lora_rank": COUNT,
    "lora_alpha": COUNT,
    "resolution": COUNT,
    "num_inference_steps": COUNT,
    "max_batch_size": COUNT,
    "max_concurrency": COUNT,
    "warmup_steps": NON_NEGATIVE_INTEGER,
    "seed": NON_NEGATIVE_INTEGER,
    "batch_wait_ms": NON_NEGATIVE_INTEGER,
    # Parallel layout.
    "tensor_parallel_degree": COUNT,
    "pipeline_parallel_degree": COUNT,
    "sharding_parallel_degree": COUNT,
    "virtual_pp_degree": COUNT,
    "sharding_stage": ValueRule("integer", "integer_range", minimum=0, maximum=3),
    # PaddleNLP's `sharding` option: stage names and `offload` separated by spaces, or empty for none.
    "sharding": ValueRule("string", "sharding", pattern=r"((stage[123]|offload)( (stage[123]|offload))*)?"),
    # Optimizer and schedule.
    "learning_rate": POSITIVE_NUMBER,
    "min_learning_rate": NON_NEGATIVE_NUMBER,
    "weight_decay": NON_NEGATIVE_NUMBER,
    "max_grad_norm": NON_NEGATIVE_NUMBER,
    "dropout": ValueRule("number", "number_at_least_below", minimum=0, below=1),
    "guidance_scale": NON_NEGATIVE_NUMBER,
    # The LLM trainer decays the rate by cosine or linearly, and SD fine-tuning keeps it constant
    # (certification.kind_hyperparameters narrows this per kind).
    "lr_scheduler_type": one_of("cosine", "linear", "constant"),
    "fp16_opt_level": one_of("O1", "O2"),
    "recompute_granularity": one_of("full", "full_attn", "core_attn"),
    # The agent decodes greedily whatever the pack sets, so another value would go unnoticed.
    "decode_strategy": one_of("greedy_search"),
    # Copies of agent.inference.server.SCHEDULERS and agent.workloads.sd_images.SCHEDULERS,
    # because certification/ does not import the agent.
    "scheduler": one_of("continuous", "static"),
    "inference_scheduler": one_of("DDIMScheduler", "EulerDiscreteScheduler", "PNDMScheduler",
                                  "DPMSolverMultistepScheduler"),
    # Switches.
    "bf16": BOOLEAN,
    "fp16": BOOLEAN,
    "lora": BOOLEAN,
    "recompute": BOOLEAN,
    "sequence_parallel": BOOLEAN,
    "use_flash_attention": BOOLEAN,
    "use_fused_rms_norm": BOOLEAN,
    "use_fused_rope": BOOLEAN,
    "center_crop": BOOLEAN,
    "random_flip": BOOLEAN,
}


def expected_value(key: str, value: Any) -> str | None:
    """Return what `key` expects when `value` is not accepted, such as "an integer of at least 1", else None."""
    rule = HYPERPARAMETER_RULES.get(key)
    if rule is None or rule.accepts(value):
        return None
    return rule.expected()
