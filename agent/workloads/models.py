"""The causal language models a rule pack may name, built through PaddleNLP from the pack's config.

A pack's `models.<name>.architecture` is a PaddleNLP class name from
ARCHITECTURES. The pack's fixed `dropout` goes to every dropout setting the
architecture has; an architecture without dropout layers (PaddleNLP's LLaMA)
accepts only dropout 0. With pipeline parallelism the agent builds the
architecture's PaddleNLP `*Pipe` class. A pipeline or tensor-parallel model is
evaluated on its stages and ranks (agent.workloads.stage_forward) and saved
as a plain model by agent.workloads.rank_merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.workloads import initial_weights, patches


@dataclass(frozen=True)
class Architecture:
    config_class: str
    model_class: str
    dropout_keys: tuple[str, ...]
    # The PaddleNLP PipelineLayer subclass that pipeline parallelism trains, or None where PaddleNLP has none.
    pipeline_class: str | None = None
    # The layers whose initial weights PaddleNLP's `_init_weights` scales by 1/sqrt(2 * num_hidden_layers).
    scaled_init_layers: tuple[str, ...] = field(kw_only=True)


# PaddleNLP 3.0.0b4 scales the output projections of attention and MLP: o_proj and down_proj (LLaMA, Qwen2, and
# Qwen2-MoE's experts and shared expert), out_proj and linear2 (GPT).
ARCHITECTURES = {
    "LlamaForCausalLM": Architecture("LlamaConfig", "LlamaForCausalLM", (), "LlamaForCausalLMPipe",
                                     scaled_init_layers=("o_proj", "down_proj")),
    "Qwen2ForCausalLM": Architecture("Qwen2Config", "Qwen2ForCausalLM", ("attention_dropout",), "Qwen2ForCausalLMPipe",
                                     scaled_init_layers=("o_proj", "down_proj")),
    "Qwen2MoeForCausalLM": Architecture("Qwen2MoeConfig", "Qwen2MoeForCausalLM", ("attention_dropout",),
                                        "Qwen2MoeForCausalLMPipe", scaled_init_layers=("o_proj", "down_proj")),
    "GPTForCausalLM": Architecture("GPTConfig", "GPTForCausalLM", ("hidden_dropout_prob", "attention_probs_dropout_prob"),
                                   "GPTForCausalLMPipe", scaled_init_layers=("out_proj", "linear2")),
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


def pipeline_class(name: str) -> str:
    """Return the name of the architecture's PaddleNLP `*Pipe` class; raise ValueError when the installed PaddleNLP has none."""
    import paddlenlp
    import paddlenlp.transformers as transformers

    spec = architecture(name)
    if spec.pipeline_class is None or not hasattr(transformers, spec.pipeline_class):
        raise ValueError(
            f"pipeline_parallel_degree above 1 is not supported for {name}: PaddleNLP {paddlenlp.__version__} has no "
            "pipeline-parallel (*Pipe) class for it; set pipeline_parallel_degree to 1")
    return spec.pipeline_class


def is_pipelined(parallel: dict[str, Any] | None) -> bool:
    return int((parallel or {}).get("pipeline_parallel_degree", 1)) > 1


def is_tensor_parallel(parallel: dict[str, Any] | None) -> bool:
    return int((parallel or {}).get("tensor_parallel_degree", 1)) > 1


def _without_pipeline(parallel: dict[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (parallel or {}).items() if key != "pipeline_parallel_degree"}


# The config fields that split a model over processes; the plain model of one process has none of them.
SPLITTING_KEYS = ("pipeline_parallel_degree", "tensor_parallel_degree", "tensor_parallel_rank", "tensor_parallel_output")


def _unsplit(parallel: dict[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (parallel or {}).items() if key not in SPLITTING_KEYS}


def _classes(name: str, pipelined: bool = False):
    """Return the config class and the model class: the `*Pipe` class when `pipelined`, else the plain one."""
    import paddlenlp.transformers as transformers

    patches.apply()
    spec = architecture(name)
    model_class = pipeline_class(name) if pipelined else spec.model_class
    return getattr(transformers, spec.config_class), getattr(transformers, model_class)


def build_model(preset: dict[str, Any], config: dict[str, Any], parallel: dict[str, Any] | None = None, *, seed: int):
    """Build a model with the initial weights of agent.workloads.initial_weights; `parallel` adds PaddleNLP's parallel and recompute settings.

    Under pipeline or tensor parallelism each process builds only its own
    stage or tensor-parallel rank, and gets its part of the values that the
    plain model of one process gets with the same seed. So a run starts from
    the same weights whatever its layout.
    """
    name = preset["architecture"]
    config_class, model_class = _classes(name)
    plain_config = config_class(**config, **_unsplit(parallel))
    if is_pipelined(parallel) or is_tensor_parallel(parallel):
        _, split_class = _classes(name, pipelined=is_pipelined(parallel))
        model = split_class(config_class(**config, **parallel))
    else:
        model = model_class(plain_config)

    parameters = initial_weights.plain_parameters(model_class, plain_config, architecture(name).scaled_init_layers)
    actions = _split_actions(model_class, model.config, list(parameters)) if is_tensor_parallel(parallel) else {}
    initial_weights.set_initial_weights(model, parameters, seed, actions)
    return model


def _split_actions(model_class, config, names: list[str]) -> dict[str, Any]:
    """Return PaddleNLP's split actions by plain parameter name for tensor-parallel rank `config.tensor_parallel_rank`."""
    return model_class.get_tensor_parallel_convert_actions(config, names, is_split=True, ignore_error=True)


def _tensor_parallel_part(model_class, config, weights: dict[str, Any]) -> dict[str, Any]:
    """Return `weights` of the plain model cut to the part that tensor-parallel rank `config.tensor_parallel_rank` holds.

    PaddleNLP's own split actions for the architecture decide which weights
    are cut and along which axis; the others are kept whole.
    """
    import paddle

    actions = _split_actions(model_class, config, list(weights))
    return {name: paddle.to_tensor(actions[name](tensor.numpy())) if name in actions else tensor
            for name, tensor in weights.items()}


def load_pretrained(preset: dict[str, Any], path: Path, parallel: dict[str, Any] | None = None):
    """Load a model that an earlier workload of this run saved with `save_pretrained`."""
    _, model_class = _classes(preset["architecture"], is_pipelined(parallel))
    return model_class.from_pretrained(str(path), dtype="float32", **_without_pipeline(parallel))


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
    runner has already refused a config.json that contradicts the pack. A
    folder of per-rank tensor-parallel files loads only under the degree it
    was saved with and without pipeline parallelism, each rank reading its
    own file.
    """
    from agent.runner.weights import check_tensor_parallel_degree

    folder = str(record["path"])
    # TrainingArguments leaves tensor_parallel_degree at -1 in a run without tensor parallelism.
    degree = max(int((parallel or {}).get("tensor_parallel_degree", 1)), 1)
    pipeline_degree = max(int((parallel or {}).get("pipeline_parallel_degree", 1)), 1)
    check_tensor_parallel_degree(record.get("weights", {}), folder, degree, pipeline_degree)
    config_class, model_class = _classes(preset["architecture"], is_pipelined(parallel))
    model_config_object = config_class.from_pretrained(folder)
    for key, value in {**config, **_without_pipeline(parallel)}.items():
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
        return build_model(context.model_preset, context.model_config, parallel, seed=int(context.fixed["seed"]))
    dtype = weights_dtype({**context.fixed, **context.free})
    return load_checkpoint(context.model_preset, context.checkpoint(), context.model_config, dtype, parallel)


def model_record(context) -> dict[str, Any]:
    """Return the model part of config.json, with the checkpoint's folder, digest, files and config.json when there is one.

    `checkpoint.stored_dtypes` are the dtypes of the weight files, and
    `checkpoint.dtype` is the one the run loads them in: from_pretrained
    casts each tensor on load. A model built from the pack's config records
    its `initial_weights` recipe and seed instead.
    """
    record = {"name": context.model_name, "architecture": context.model_preset["architecture"],
              "config": effective_model_config(context)}
    if context.checkpoint_model is None and context.init_from is None:
        record["initial_weights"] = initial_weights.record(int(context.fixed["seed"]))
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


def is_split(model) -> bool:
    """True when `model` holds only its tensor-parallel rank's part of the weights."""
    return int(getattr(getattr(model, "config", None), "tensor_parallel_degree", 1)) > 1


def plain_class(preset: dict[str, Any]):
    """Return the PaddleNLP class of the preset's model on one process, whose merge rules put split weights together."""
    return _classes(preset["architecture"])[1]
