"""The causal language models a rule pack may name, built through PaddleNLP from the pack's config.

A pack's `models.<name>.architecture` is a PaddleNLP class name from
ARCHITECTURES. The pack's fixed `dropout` goes to every dropout setting the
architecture has; an architecture without dropout layers (PaddleNLP's LLaMA)
accepts only dropout 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.workloads import patches


@dataclass(frozen=True)
class Architecture:
    config_class: str
    model_class: str
    dropout_keys: tuple[str, ...]


ARCHITECTURES = {
    "LlamaForCausalLM": Architecture("LlamaConfig", "LlamaForCausalLM", ()),
    "Qwen2ForCausalLM": Architecture("Qwen2Config", "Qwen2ForCausalLM", ("attention_dropout",)),
    "Qwen2MoeForCausalLM": Architecture("Qwen2MoeConfig", "Qwen2MoeForCausalLM", ("attention_dropout",)),
    "GPTForCausalLM": Architecture("GPTConfig", "GPTForCausalLM", ("hidden_dropout_prob", "attention_probs_dropout_prob")),
}


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"model architecture {name!r} is not supported: use one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


# Hyperparameters that PaddleNLP reads from the model config rather than from TrainingArguments.
MODEL_CONFIG_KEYS = ("use_flash_attention", "use_fused_rms_norm", "use_fused_rope", "recompute_granularity",
                     "sequence_parallel", "fuse_attention_qkv", "fuse_attention_ffn")


def model_config(preset: dict[str, Any], hyperparameters: dict[str, Any], device: str) -> dict[str, Any]:
    """Return the PaddleNLP config of a pack model preset, with the workload's dropout and kernel choices applied.

    `hyperparameters` contains the workload's fixed and free values together.
    """
    spec = architecture(preset["architecture"])
    dropout = float(hyperparameters.get("dropout", 0.0))
    if dropout != 0.0 and not spec.dropout_keys:
        raise ValueError(f"dropout {dropout} is not supported: PaddleNLP's {preset['architecture']} has no dropout layers")

    config = dict(preset["config"])
    for key in spec.dropout_keys:
        config[key] = dropout
    config.update({key: hyperparameters[key] for key in MODEL_CONFIG_KEYS if key in hyperparameters})
    # PaddleNLP's flash attention kernels exist only for GPUs and some custom devices.
    if device == "cpu" or "use_flash_attention" not in config:
        config["use_flash_attention"] = False
    return config


def _classes(name: str):
    import paddlenlp.transformers as transformers

    patches.apply()
    spec = architecture(name)
    return getattr(transformers, spec.config_class), getattr(transformers, spec.model_class)


def build_model(preset: dict[str, Any], config: dict[str, Any], parallel: dict[str, Any] | None = None):
    """Build a freshly initialised model; `parallel` adds PaddleNLP's tensor-parallel and recompute settings."""
    config_class, model_class = _classes(preset["architecture"])
    return model_class(config_class(**config, **(parallel or {})))


def load_pretrained(preset: dict[str, Any], path: Path, parallel: dict[str, Any] | None = None):
    """Load a model that an earlier workload of this run saved with `save_pretrained`."""
    _, model_class = _classes(preset["architecture"])
    return model_class.from_pretrained(str(path), dtype="float32", **(parallel or {}))


def weights_dtype(hyperparameters: dict[str, Any]) -> str:
    """Return the data type released weights load in: under O2 mixed precision the one O2 trains in, else float32."""
    if hyperparameters.get("fp16_opt_level") == "O2":
        if hyperparameters.get("bf16"):
            return "bfloat16"
        if hyperparameters.get("fp16"):
            return "float16"
    return "float32"


def load_checkpoint(preset: dict[str, Any], record: dict[str, Any], config: dict[str, Any], dtype: str,
                    parallel: dict[str, Any] | None = None):
    """Load released weights from the local folder of a verified checkpoint record (agent.runner.checkpoints).

    The checkpoint's config.json is read, the run's `config` (the pack's
    values, dropout and kernel choices) and `parallel` are set on top, and
    PaddleNLP's `from_pretrained` reads the weights from the folder. The
    runner has already refused a config.json that contradicts the pack.
    """
    config_class, model_class = _classes(preset["architecture"])
    folder = str(record["path"])
    model_config_object = config_class.from_pretrained(folder)
    for key, value in {**config, **(parallel or {})}.items():
        setattr(model_config_object, key, value)
    return model_class.from_pretrained(folder, config=model_config_object, dtype=dtype)


def effective_model_config(context) -> dict[str, Any]:
    """Return the model config a workload trains with: the checkpoint's config.json, if it starts from one, with the run's on top.

    Its `dtype` is the one the weights load in, not the one config.json
    records for the stored weights (often bfloat16).
    """
    if context.checkpoint_model is None:
        return context.model_config
    return {**context.checkpoint()["config"], **context.model_config, "dtype": weights_dtype({**context.fixed, **context.free})}


def start_model(context, parallel: dict[str, Any] | None = None):
    """Build a workload's model from the pack's config, or load the released checkpoint it starts from."""
    if context.checkpoint_model is None:
        return build_model(context.model_preset, context.model_config, parallel)
    dtype = weights_dtype({**context.fixed, **context.free})
    return load_checkpoint(context.model_preset, context.checkpoint(), context.model_config, dtype, parallel)


def model_record(context) -> dict[str, Any]:
    """Return the model part of config.json, with the checkpoint's folder, digest, files and config.json when there is one.

    `checkpoint.stored_dtypes` are the dtypes of the weight files, and
    `checkpoint.dtype` is the one the run loads them in: from_pretrained
    casts each tensor on load.
    """
    record = {"name": context.model_name, "architecture": context.model_preset["architecture"],
              "config": effective_model_config(context)}
    if context.checkpoint_model is not None:
        checkpoint = context.checkpoint()
        weights = checkpoint.get("weights", {})
        record["checkpoint"] = {
            "path": checkpoint["path"], "sha256": checkpoint["sha256"], "pinned": checkpoint["pinned"],
            "files": checkpoint["files"], "config_json": checkpoint["config"],
            "weight_files": weights.get("files"), "stored_dtypes": weights.get("stored_dtypes"),
            "dtype": weights_dtype({**context.fixed, **context.free}),
        }
    return record


def decoder_and_head(model):
    """Return the decoder stack and the LM head of a causal LM, or of the model a LoRA wrapper holds."""
    inner = getattr(model, "model", model) if not hasattr(model, "base_model_prefix") else model
    return getattr(inner, inner.base_model_prefix), inner.lm_head
