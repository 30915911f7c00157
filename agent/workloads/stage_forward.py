"""Forward passes of a pipeline-parallel (`*Pipe`) model for evaluation, run on the stages themselves.

Every process of a pipe group runs the same batch in step. The first stage
reads the inputs, and each stage runs its own layers and sends its output
to the next stage with send and recv over the pipe group. The last stage
computes what the evaluation needs from the logits and broadcasts the
per-batch result over the pipe group, so every process returns the same
values. No process has more than its own stage's weights in memory. Under tensor
parallelism too, each tensor-parallel rank has its own pipe group, and the
ranks of a stage run their layers together.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import paddle
import paddle.distributed as dist

# Bool masks travel as uint8, so that sending them does not rely on a backend's bool support, which was not checked.
TRANSPORT_DTYPES = {paddle.bool: paddle.uint8}


def pipe_group():
    """Return this process's pipe group, whose global ranks are listed in stage order."""
    from paddle.distributed import fleet

    hcg = fleet.get_hybrid_communicate_group()
    group = hcg.get_pipe_parallel_group()
    if group.ranks[hcg.get_stage_id()] != dist.get_rank():
        raise RuntimeError(f"the pipe group {group.ranks} does not list global rank {dist.get_rank()} at its stage "
                           f"{hcg.get_stage_id()}, so stages cannot tell their neighbours apart")
    return group


def send_activations(output, destination: int, group, failure: str | None = None) -> None:
    """Send a stage's output, one tensor or a tuple of tensors, to global rank `destination`.

    The shapes and data types go first, so that the receiver can allocate
    the tensors. They change from batch to batch, because LAMBADA batches
    have different lengths. With `failure` set, only that message goes,
    and `output` is ignored: this stage or one before it failed on the batch.
    """
    if failure is not None:
        tensors = ()
    else:
        tensors = output if isinstance(output, tuple) else (output,)
    layout = [(str(tensor.dtype), list(tensor.shape)) for tensor in tensors]
    dist.send_object_list([isinstance(output, tuple), layout, failure], dst=destination, group=group)
    for tensor in tensors:
        transport = TRANSPORT_DTYPES.get(tensor.dtype)
        dist.send(tensor.astype(transport) if transport else tensor.contiguous(), dst=destination, group=group)


def receive_activations(source: int, group):
    """Receive what send_activations sent from global rank `source`: the tensor or tuple it was, and the failure message or None."""
    header: list[Any] = [None, None, None]
    dist.recv_object_list(header, src=source, group=group)
    is_tuple, layout, failure = header
    tensors = []
    for dtype_name, shape in layout:
        dtype = getattr(paddle, dtype_name.split(".")[-1])
        transport = TRANSPORT_DTYPES.get(dtype, dtype)
        tensor = paddle.empty(shape, dtype=transport)
        dist.recv(tensor, src=source, group=group)
        tensors.append(tensor.astype(dtype) if transport != dtype else tensor)
    if failure is not None:
        return None, failure
    return (tuple(tensors) if is_tuple else tensors[0]), None


def run_layers(layers, inputs):
    """Run a stage's layers in order, as PipelineLayer.forward does without recompute."""
    output = inputs
    for layer in layers:
        output = layer(output)
    return output


@dataclasses.dataclass
class StageOutcome:
    """The result of forward_to_last_stage on one process: the last stage's output, and any failure on the way."""

    output: Any = None
    is_last: bool = False
    # This process's own error, and the message of a failure that came from an earlier stage.
    error: Exception | None = None
    upstream: str | None = None


def forward_to_last_stage(model, inputs, keep_head: bool = False) -> StageOutcome:
    """Run `inputs` through every stage of `model`, and return this process's outcome, the output on the last stage.

    With `keep_head`, the last stage stops before its last layer, the LM
    head, and its output is `(hidden_states, head)`, so that the caller
    applies the head to the positions it needs only. A stage whose layers
    raise passes the failure on to the next stages instead of its output, so
    that none of them waits for activations that never come. The error is
    raised by broadcast_from_last_stage, on every stage at once.
    """
    if getattr(model, "_num_virtual_pipeline_stages", 1) > 1:
        raise ValueError(f"{type(model).__name__} has {model._num_virtual_pipeline_stages} virtual stages per process, "
                         "which evaluation on the stages does not run: set the model config's virtual_pp_degree to 1")
    group = pipe_group()
    ranks = group.ranks
    stage = ranks.index(dist.get_rank())
    layers = list(model.run_function)
    outcome = StageOutcome(is_last=stage == len(ranks) - 1)
    if stage > 0:
        inputs, outcome.upstream = receive_activations(ranks[stage - 1], group)
    if outcome.upstream is None:
        try:
            if outcome.is_last and keep_head:
                outcome.output = run_layers(layers[:-1], inputs), layers[-1]
            else:
                outcome.output = run_layers(layers, inputs)
        except Exception as raised:  # the later stages must learn of any failure, or they wait for activations
            outcome.error = raised
    if not outcome.is_last:
        failure = outcome.upstream
        if outcome.error is not None:
            failure = f"stage {stage} (global rank {ranks[stage]}): {type(outcome.error).__name__}: {outcome.error}"
        send_activations(outcome.output, ranks[stage + 1], group, failure)
        outcome.output = None
    return outcome


def broadcast_from_last_stage(outcome: StageOutcome, compute, shape: list[int], dtype: str):
    """Apply `compute` to the last stage's output there, and return its result on every stage of the pipe group.

    The last stage first broadcasts the message of any failure of the batch,
    on any stage, in the forward pass or in `compute`, or None. After a
    failure a stage that failed raises its own error and the others raise
    RuntimeError with that message, instead of waiting in the broadcast of
    the result until the collective timeout.
    """
    group = pipe_group()
    last = group.ranks[-1]
    values, error, failure = None, outcome.error, outcome.upstream
    if outcome.is_last and error is None and failure is None:
        try:
            values = compute(outcome.output)
        except Exception as raised:  # the other stages must learn of any failure, or they wait for the result
            error = raised
    if outcome.is_last and error is not None:
        failure = f"the last stage (global rank {last}): {type(error).__name__}: {error}"
    failures = [failure]
    dist.broadcast_object_list(failures, src=last, group=group)
    if error is not None:
        raise error
    if failures[0] is not None:
        raise RuntimeError(f"evaluating the batch on the pipeline stages failed on {failures[0]}")
    if values is None:
        values = paddle.empty(shape, dtype=dtype)
    dist.broadcast(values, src=last, group=group)
    return values


def checked_logits(logits, vocab_size: int):
    """Return `logits` after checking that the last stage's last layer produced logits over the whole vocabulary."""
    if logits.shape[-1] != vocab_size:
        raise RuntimeError(f"the last pipeline stage returned an output of width {logits.shape[-1]}, not logits over the "
                           f"vocabulary of {vocab_size}: its last layer is not the LM head, or the head's output is split")
    return logits


def token_loss_sum(model, blocks) -> float:
    """Return the sum of the float32 token cross-entropies of `blocks` (inputs and labels one token apart), on every stage."""
    outcome = forward_to_last_stage(model, blocks[:, :-1])

    def loss_sum(output):
        logits = checked_logits(output, model.config.vocab_size).astype("float32")
        losses = paddle.nn.functional.cross_entropy(logits, blocks[:, 1:].unsqueeze(-1), reduction="none")
        return losses.astype("float64").sum().reshape([1])

    return float(broadcast_from_last_stage(outcome, loss_sum, [1], "float64").item())


def predictions_at(model, input_ids, attention_mask, rows: list[int], columns: list[int]) -> list[int]:
    """Return the greedy (argmax) predictions at the given (row, column) positions of a padded batch, on every stage.

    The last stage applies the LM head to those positions only. The first
    stage receives the mask as bool, because PaddleNLP 3.0.0b4's
    LlamaEmbeddingPipe reads an int64 mask as position ids on GPUs and a
    bool one as the attention mask on every device.
    """
    outcome = forward_to_last_stage(model, (input_ids, attention_mask.astype("bool")), keep_head=True)

    def predictions(output):
        hidden, head = output
        picked = hidden[paddle.to_tensor(rows), paddle.to_tensor(columns)]
        logits = checked_logits(head(picked.unsqueeze(0)).squeeze(0), model.config.vocab_size)
        return logits.argmax(axis=-1).astype("int64")

    return broadcast_from_last_stage(outcome, predictions, [len(rows)], "int64").numpy().tolist()
