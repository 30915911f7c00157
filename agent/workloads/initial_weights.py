"""Initial weights that are the same whatever the parallel layout, drawn one parameter at a time on the host.

PaddleNLP's own init draws from Paddle's generator in the local shapes of
each process, so a tensor-parallel or pipeline run would start from other
weights than a one-process run. The agent's recipe instead draws each whole
plain parameter with NumPy from a generator keyed by the seed and the
parameter's name, and each process keeps the part of it that it holds:

- A parameter that PaddleNLP 3.0.0b4's `_init_weights` draws (the weight of
  every Linear, Embedding and LM head layer) gets normal(0, std) values:
  `standard_normal(dtype=float32)` of a `Philox` generator whose key is the
  first 16 bytes of sha256("<seed>:<name>"), times std. The std is the
  config's `initializer_range`, and for the layers that the architecture
  scales (`Architecture.scaled_init_layers`) it is also divided by
  sqrt(2 * num_hidden_layers), as PaddleNLP does.
- Any other parameter (norm weights, biases, the Qwen2-MoE router's weight)
  keeps the constant that PaddleNLP set. A non-constant one raises
  RuntimeError, because its values would depend on the layout.
- A parameter that the plain model lists under two names (tied embeddings)
  is drawn once, keyed by its first name in the plain state_dict.

Each process draws every whole parameter of its own stage once. That costs
host time and memory for one whole parameter at a time, never the whole model.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "philox-normal-by-name-v1"


@dataclass(frozen=True)
class PlainParameter:
    """A parameter of the plain model of one process: its canonical name, plain shape and initial std."""

    name: str
    shape: tuple[int, ...]
    # None where PaddleNLP sets a constant, which the model keeps.
    std: float | None


def record(seed: int) -> dict[str, Any]:
    """Return the entry of config.json that names the recipe and its seed."""
    return {"method": METHOD, "seed": seed,
            "recipe": "each whole plain parameter drawn with NumPy's Philox generator keyed by sha256('<seed>:<name>'), "
                      "normal(0, std) where PaddleNLP draws it, then cut for the tensor-parallel rank; "
                      "PaddleNLP's constants kept"}


def plain_parameters(model_class, config, scaled_layers: tuple[str, ...]) -> dict[str, PlainParameter]:
    """Map every name of the plain model's state_dict to its parameter, without allocating any weight.

    The model is built under `paddle.LazyGuard` with PaddleNLP's init
    switched off, so its parameters have shapes but no memory. Its buffers,
    such as rotary-embedding tables, are allocated until it is dropped. A
    tied parameter appears under each of its names with its first name.
    """
    import paddle
    from paddlenlp.transformers.model_utils import no_init_weights

    with no_init_weights(), paddle.LazyGuard():
        plain = model_class(config)
    drawn = _drawn_parameter_ids(plain)
    factor = 1 / math.sqrt(2 * config.num_hidden_layers)

    parameters: dict[str, PlainParameter] = {}
    first_names: dict[int, str] = {}
    for name, tensor in plain.state_dict().items():
        first = first_names.setdefault(id(tensor), name)
        if first != name:
            parameters[name] = parameters[first]
            continue
        std = None
        if id(tensor) in drawn:
            std = config.initializer_range * (factor if name.split(".")[-2] in scaled_layers else 1.0)
        parameters[name] = PlainParameter(name, tuple(tensor.shape), std)
    return parameters


def _drawn_parameter_ids(model) -> set[int]:
    """Return the ids of the parameters that PaddleNLP 3.0.0b4's `_init_weights` draws from a normal distribution.

    Those are the `weight` of every nn.Linear, nn.Embedding and LM head
    layer (a `*LMHead` class) of the plain model. GPT's `_init_weights`
    does not list GPTLMHead, but its weight is always the word embedding's.
    """
    import paddle.nn as nn

    drawn = set()
    for _, layer in model.named_sublayers(include_self=True):
        if isinstance(layer, (nn.Linear, nn.Embedding)) or type(layer).__name__.endswith("LMHead"):
            weight = getattr(layer, "weight", None)
            if weight is not None:
                drawn.add(id(weight))
    return drawn


def draw(seed: int, parameter: PlainParameter) -> np.ndarray:
    """Draw the whole float32 value of a parameter that PaddleNLP initialises from normal(0, std)."""
    key = int.from_bytes(hashlib.sha256(f"{seed}:{parameter.name}".encode()).digest()[:16], "little")
    values = np.random.Generator(np.random.Philox(key=key)).standard_normal(parameter.shape, dtype=np.float32)
    values *= np.float32(parameter.std)
    return values


def cut(whole: np.ndarray, local_shape: tuple[int, ...], split_action, name: str) -> np.ndarray:
    """Return the part of `whole` that a process holding `local_shape` has, cut by PaddleNLP's split action.

    A parameter whose local shape is the plain one is held whole. Raise
    RuntimeError when the part does not have the local shape.
    """
    if tuple(whole.shape) == tuple(local_shape):
        return whole
    part = split_action(whole) if split_action is not None else whole
    if tuple(part.shape) != tuple(local_shape):
        raise RuntimeError(f"the initial value of {name} cut for this tensor-parallel rank has shape {list(part.shape)}, "
                           f"but the model's parameter has shape {list(local_shape)}")
    return np.ascontiguousarray(part)


def set_initial_weights(model, parameters: dict[str, PlainParameter], seed: int, split_actions: dict[str, Any]) -> None:
    """Set every drawn parameter of `model` (plain, `*Pipe` or a tensor-parallel part) to its part of the recipe's value.

    `model.state_dict()` must use the plain model's names, as PaddleNLP's
    `*Pipe` classes do. `split_actions` are PaddleNLP's tensor-parallel
    split actions by plain name, empty without tensor parallelism.
    """
    import paddle

    done: set[int] = set()
    for name, tensor in model.state_dict().items():
        if id(tensor) in done:
            continue
        done.add(id(tensor))
        if name not in parameters:
            raise RuntimeError(f"{type(model).__name__} has parameter {name}, which the plain model does not have")
        parameter = parameters[name]
        if parameter.std is None:
            _check_constant(tensor, name)
            continue

        # NOTE: one CPU core draws every whole parameter, and every tensor-parallel rank of a stage draws the same
        # values: an estimated 15 to 30 minutes per process for LLaMA3-70B under tensor degree 8.
        whole = draw(seed, parameter)
        action = split_actions.get(parameter.name, split_actions.get(name))
        part = cut(whole, tuple(tensor.shape), action, name)
        del whole
        # A Tensor passed to set_value replaces the parameter's storage, so it must already be on the parameter's device.
        tensor.set_value(paddle.to_tensor(part, place=tensor.place).astype(tensor.dtype))


def _check_constant(tensor, name: str) -> None:
    """Raise RuntimeError unless every value of `tensor` is the same, as PaddleNLP's constant inits give."""
    # The CPU has no max or min kernel for bfloat16 and float16.
    values = tensor.astype("float32")
    if values.numel() and float(values.max()) != float(values.min()):
        raise RuntimeError(f"parameter {name} is neither drawn by the initial-weights recipe nor a constant, so its "
                           "initial values would depend on the parallel layout")
