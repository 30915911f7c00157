"""Inference data types: load the model in each one with Paddle's own kernels, or report that the device has none.

| name | weights | activations | Paddle kernels used |
|---|---|---|---|
| fp32 | float32 | float32 | the model's ordinary kernels (the CPU demo's stand-in for 16-bit) |
| fp16, bf16 | float16 / bfloat16 | same | the model's ordinary kernels in that dtype |
| int8_weight_only, int4_weight_only | int8 / int4 per output channel | bf16 (else fp16) | `paddle.nn.quant.weight_quantize` and `weight_only_linear` |
| a8w8 | int8 per output channel | int8 per tensor, scales from `paddle.quantization.PTQ` calibration | int8 x int8 `paddle.matmul` |

Every data type is first probed on the device: a forward pass of the model
in that dtype, or the quantized kernel on a small tensor. When Paddle has no
kernel for it there (a `NotFound` "kernel ... is not registered" error), the
data type raises DataTypeNotSupported and the workload records "not
supported on this device". Nothing is emulated in another dtype.

A8W8 calibrates before it probes the int8 kernel, so that the calibration
(Paddle's PTQ with an AbsmaxObserver on the input of every linear layer but
the LM head, over the pack's calibration set) runs and is recorded even on a
device that cannot then run the int8 model. It runs in bf16, else fp16, else
in float32, whichever the device has kernels for, and the record names it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import paddle

from agent.i18n import N_, _

logger = logging.getLogger(__name__)

DATA_TYPES = ("fp32", "fp16", "bf16", "int8_weight_only", "int4_weight_only", "a8w8")
PADDLE_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
WEIGHT_ONLY = {"int8_weight_only": ("weight_only_int8", "int8"), "int4_weight_only": ("weight_only_int4", "int4")}


class DataTypeNotSupported(Exception):
    """The device has no Paddle kernel for a data type; `reason` quotes what Paddle reported.

    `localized_reason` is the reason in the user's language, which keeps Paddle's own text as it is.
    """

    def __init__(self, data_type: str, reason: str, record: dict[str, Any] | None = None, localized_reason: str | None = None):
        super().__init__(f"{data_type} is not supported on this device: {reason}")
        self.data_type = data_type
        self.reason = reason
        self.localized_reason = localized_reason or reason
        # What was done before the missing kernel showed, such as the A8W8 calibration.
        self.record = record or {}

    def localized(self) -> str:
        """Return the data type and the reason in the user's language, for the runner's "not supported on this device" log line."""
        return _("{data_type}: {reason}").format(data_type=self.data_type, reason=self.localized_reason)


def _missing_kernel(error: Exception) -> bool:
    text = str(error)
    return "is not registered" in text or "(NotFound)" in text or "(Unimplemented)" in text


def _probe(data_type: str, action) -> Any:
    """Run `action`; turn Paddle's missing-kernel errors into DataTypeNotSupported, let other errors through."""
    try:
        return action()
    except (RuntimeError, NotImplementedError, ValueError) as error:
        if _missing_kernel(error):
            raise DataTypeNotSupported(data_type, str(error).strip().splitlines()[0][:300]) from error
        raise


def saved_model_loader(model_dir: Path) -> Callable[[str], Any]:
    """Return a loader of the causal LM that `save_pretrained` wrote to `model_dir`, in the dtype it is given."""
    from paddlenlp.transformers import AutoModelForCausalLM

    return lambda dtype: AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)


def load_model(load: Callable[[str], Any], data_type: str, tokenizer, calibration_texts: list[str] | None = None):
    """Load the model in `data_type` and return (model, record for config.json).

    `load(dtype)` returns the model with its weights in that Paddle dtype.
    The record's `loaded_in` names the dtype the weights were read in,
    before any quantization.
    """
    if data_type not in DATA_TYPES:
        raise ValueError(f"data type {data_type!r} is not known: use one of {', '.join(DATA_TYPES)}")
    if data_type in PADDLE_DTYPES:
        dtype = PADDLE_DTYPES[data_type]
        model = _load_in(load, data_type, dtype, tokenizer)
        return model, {"data_type": data_type, "weights": dtype, "activations": dtype, "loaded_in": dtype}
    if data_type == "a8w8":
        return _a8w8(load, tokenizer, calibration_texts or [])
    activations, model = _sixteen_bit(load, data_type, tokenizer)
    return _weight_only(model, data_type, activations)


def _load_in(load: Callable[[str], Any], data_type: str, dtype: str, tokenizer):
    model = load(dtype)
    model.eval()
    probe = paddle.to_tensor([[tokenizer.bos_token_id, 100, 200]], dtype="int64")
    with paddle.no_grad():
        _probe(data_type, lambda: model(input_ids=probe, return_dict=True).logits.numpy())
    return model


def _sixteen_bit(load: Callable[[str], Any], data_type: str, tokenizer) -> tuple[str, Any]:
    """Return the 16-bit activation dtype (bf16, else fp16) that the quantized kernels run with, and the model loaded in it."""
    reasons = []
    for name in ("bf16", "fp16"):
        try:
            return PADDLE_DTYPES[name], _load_in(load, data_type, PADDLE_DTYPES[name], tokenizer)
        except DataTypeNotSupported as error:
            reasons.append(f"{name}: {error.reason}")
    template = N_("its activations need bf16 or fp16 kernels, and neither runs here ({reasons})")
    joined = "; ".join(reasons)
    raise DataTypeNotSupported(data_type, template.format(reasons=joined), localized_reason=_(template).format(reasons=joined))


def quantized_linears(model, observed: bool = False) -> list[tuple[Any, str, Any]]:
    """Return (parent, attribute, layer) for every nn.Linear of the model except the LM head.

    With `observed`, return the QuantedLinear layers that calibration put in their place instead.
    """
    from paddle.nn.quant.qat import QuantedLinear

    kind = QuantedLinear if observed else paddle.nn.Linear
    found = []
    for parent in model.sublayers(include_self=True):
        for name, child in parent.named_children():
            if isinstance(child, kind) and name != "lm_head":
                found.append((parent, name, child))
    return found


def _weight_only(model, data_type: str, activations: str):
    algo, weight_dtype = WEIGHT_ONLY[data_type]
    sample = paddle.ones([64, 64], dtype=activations)
    quantized, scale = _probe(data_type, lambda: paddle.nn.quant.weight_quantize(sample, algo=algo))
    _probe(data_type, lambda: paddle.nn.quant.weight_only_linear(
        paddle.ones([2, 64], dtype=activations), quantized, weight_scale=scale, weight_dtype=weight_dtype).numpy())

    # NOTE: this path runs only on devices with weight-only kernels; the CPU
    # that the tests run on has none, so it is not exercised there.
    layers = quantized_linears(model)
    for parent, name, linear in layers:
        setattr(parent, name, WeightOnlyLinear(linear, algo, weight_dtype))
    return model, {"data_type": data_type, "weights": weight_dtype, "activations": activations, "loaded_in": activations,
                   "quantization": f"paddle.nn.quant.weight_quantize(algo={algo!r}), per output channel",
                   "quantized_layers": len(layers)}


def _a8w8(load: Callable[[str], Any], tokenizer, calibration_texts: list[str]):
    if not calibration_texts:
        raise ValueError("a8w8 needs a calibration set: name one under the workload's datasets.calibration")
    try:
        activations, model = _sixteen_bit(load, "a8w8", tokenizer)
        sixteen_bit_missing = sixteen_bit_localized = ""
    except DataTypeNotSupported as error:
        activations, sixteen_bit_missing, sixteen_bit_localized = "float32", error.reason, error.localized_reason
        model = _load_in(load, "a8w8", activations, tokenizer)
    layers = quantized_linears(model)
    scales = calibrate(model, tokenizer, calibration_texts)
    record = {"data_type": "a8w8", "weights": "int8", "activations": "int8", "loaded_in": activations,
              "quantization": "PTQ: per-tensor activation scale = abs max over the calibration set / 127 "
                              "(paddle.quantization.PTQ, AbsmaxObserver), per-output-channel weight scale = abs max / 127",
              "calibration": {**calibration_record(scales, len(calibration_texts), activations), "scales": scales},
              "quantized_layers": len(layers)}
    try:
        _probe("a8w8", lambda: paddle.matmul(paddle.ones([2, 8], dtype="int8"), paddle.ones([8, 4], dtype="int8")).numpy())
        if sixteen_bit_missing:
            raise DataTypeNotSupported("a8w8", sixteen_bit_missing, localized_reason=sixteen_bit_localized)
    except DataTypeNotSupported as error:
        raise DataTypeNotSupported("a8w8", error.reason, record, error.localized_reason) from error

    # NOTE: like the weight-only path, this runs only where an int8 GEMM kernel exists.
    for parent, name, quanted in quantized_linears(model, observed=True):
        setattr(parent, name, A8W8Linear(quanted, scales[quanted.calibration_name]))
    return model, record


def calibrate(model, tokenizer, texts: list[str]) -> dict[str, float]:
    """Calibrate the input abs max of every linear layer but the LM head with Paddle's PTQ; return them by layer name.

    `paddle.quantization.PTQ` replaces those layers, in place, by
    QuantedLinear layers whose AbsmaxObserver records each input. The texts
    then run through the model one at a time (BOS + ids, at most 256
    tokens). The observed layers stay in the model, marked with their name.
    """
    from paddle.quantization import PTQ, QuantConfig
    from paddle.quantization.observers import AbsmaxObserver

    if not texts:
        raise ValueError("calibration needs at least one text")
    config = QuantConfig(activation=None, weight=None)
    config.add_layer_config([linear for _, _, linear in quantized_linears(model)], activation=AbsmaxObserver(quant_bits=8))
    PTQ(config).quantize(model, inplace=True)
    observed = quantized_linears(model, observed=True)
    names = {id(layer): name for name, layer in model.named_sublayers()}
    for _, _, layer in observed:
        layer.calibration_name = names[id(layer)]
    with paddle.no_grad():
        for text in texts:
            ids = [tokenizer.bos_token_id, *tokenizer.encode(text)][:256]
            model(input_ids=paddle.to_tensor([ids], dtype="int64"))
    return {layer.calibration_name: float(layer.activation_quanter.scales().astype("float32").item())
            for _, _, layer in observed}


def calibration_record(scales: dict[str, float], samples: int, dtype: str) -> dict[str, Any]:
    """Summarize calibration scales for config.json; the digest is sha256 of `scales_json(scales)`."""
    values = list(scales.values())
    return {"method": "paddle.quantization.PTQ, AbsmaxObserver(quant_bits=8) on each linear layer's input",
            "samples": samples, "dtype": dtype, "layers": len(scales),
            "abs_max_min": min(values), "abs_max_max": max(values),
            "scales_sha256": hashlib.sha256(scales_json(scales)).hexdigest()}


def scales_json(scales: dict[str, float]) -> bytes:
    """Serialise the calibration scales canonically (layer name to input abs max, sorted by name)."""
    return json.dumps(dict(sorted(scales.items())), indent=1).encode("utf-8")


class WeightOnlyLinear(paddle.nn.Layer):
    """A linear layer whose weight is stored quantized and multiplied by Paddle's weight-only kernel."""

    def __init__(self, linear, algo: str, weight_dtype: str):
        super().__init__()
        quantized, scale = paddle.nn.quant.weight_quantize(linear.weight, algo=algo)
        self.register_buffer("quant_weight", quantized)
        self.register_buffer("weight_scale", scale)
        self.bias = linear.bias
        self.weight_dtype = weight_dtype

    def forward(self, x):
        return paddle.nn.quant.weight_only_linear(x, self.quant_weight, bias=self.bias, weight_scale=self.weight_scale,
                                                  weight_dtype=self.weight_dtype)


class A8W8Linear(paddle.nn.Layer):
    """A linear layer that quantizes its input to int8 with a calibrated scale and multiplies int8 by int8."""

    def __init__(self, linear, input_absmax: float):
        super().__init__()
        weight = linear.weight.astype("float32")
        weight_scale = paddle.clip(weight.abs().max(axis=0), min=1e-8) / 127.0
        self.register_buffer("quant_weight", paddle.clip(paddle.round(weight / weight_scale), -127, 127).astype("int8"))
        self.input_scale = max(input_absmax, 1e-8) / 127.0
        self.register_buffer("output_scale", weight_scale * self.input_scale)
        self.bias = linear.bias

    def forward(self, x):
        quantized = paddle.clip(paddle.round(x.astype("float32") / self.input_scale), -127, 127).astype("int8")
        output = paddle.matmul(quantized, self.quant_weight).astype("float32") * self.output_scale
        if self.bias is not None:
            output = output + self.bias.astype("float32")
        return output.astype(x.dtype)
