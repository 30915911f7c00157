"""The global gradient norm of each optimizer step, before clipping, taken from the gradient clipping itself.

PaddleNLP's Trainer gives its optimizer `ClipGradByGlobalNorm(max_grad_norm)`
when `max_grad_norm` is above 0. Under tensor, pipeline or sharding
parallelism, `fleet.distributed_optimizer` replaces that clip with
`HybridParallelClipGrad`, which all-reduces the squared norm over the
model-parallel, pipeline and sharding groups before it scales the
gradients. `GradientNormCapture` records the norm that the clip in use
computes, so the norm is computed once per step and covers every rank:

- `HybridParallelClipGrad`: its `_global_norm` step, which does the
  all-reduces, is wrapped, and the norm is read right after it.
- `ClipGradByGlobalNorm` (one process, or plain data parallelism, where the
  gradients are already averaged when the optimizer runs): it is replaced by
  `RecordingGlobalNormClip`, which clips the same way and keeps the norm.
- `GroupShardedClipGrad` (sharding stage 3, and stage 2 outside hybrid
  parallelism or with offload): its `_dygraph_clip` is wrapped, and the
  same norm is computed just before it, see `sharded_norm`.
- No clip (`max_grad_norm` 0), per-group clips or another clip class: the
  agent computes the norm itself before the optimizer step, see
  `computed_norm`.
"""

from __future__ import annotations

import logging

import paddle
from paddle.distributed.fleet.meta_optimizers.dygraph_optimizer.hybrid_parallel_optimizer import HybridParallelClipGrad
from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_utils import GroupShardedClipGrad
from paddle.nn import ClipGradByGlobalNorm

from agent.i18n import _

logger = logging.getLogger(__name__)

LOW_PRECISION = (paddle.float16, paddle.bfloat16)


class GradientNormCapture:
    """The pre-clipping global gradient norm of the latest optimizer step, from the optimizer's own clip where it has one."""

    def __init__(self, optimizer):
        self.norm = None
        self.source = self._install(innermost_optimizer(optimizer))

    def _install(self, optimizer) -> str:
        clip = getattr(optimizer, "_grad_clip", None)
        groups = getattr(optimizer, "_param_groups", None) or []
        if groups and isinstance(groups[0], dict):
            # Each parameter group is clipped with its own norm, so no clip computes the norm of all gradients.
            return "agent"
        if isinstance(clip, HybridParallelClipGrad):
            self._wrap_hybrid_reduction(clip)
            return "HybridParallelClipGrad"
        if type(clip) is ClipGradByGlobalNorm:
            optimizer._grad_clip = RecordingGlobalNormClip(clip, self)
            return "ClipGradByGlobalNorm"
        if isinstance(clip, RecordingGlobalNormClip):
            clip.capture = self
            return "ClipGradByGlobalNorm"
        if isinstance(clip, GroupShardedClipGrad):
            self._wrap_sharded_clip(clip)
            return "GroupShardedClipGrad"
        if clip is not None:
            logger.warning(_("the agent computes grad_norm itself, because the optimizer's gradient clip {clip} does not expose it").format(
                clip=type(clip).__name__))
        return "agent"

    def _wrap_hybrid_reduction(self, clip: HybridParallelClipGrad) -> None:
        reduce = clip._global_norm

        def reduce_and_record(squares_distributed, squares_replicated):
            # The clip all-reduces both sums in place, and its next step takes the square root of their sum.
            reduce(squares_distributed, squares_replicated)
            self.norm = paddle.sqrt(squares_distributed + squares_replicated)

        clip._global_norm = reduce_and_record

    def _wrap_sharded_clip(self, clip: GroupShardedClipGrad) -> None:
        clip_gradients = clip._dygraph_clip

        def record_and_clip(params_grads):
            # GroupShardedClipGrad keeps its norm in a local variable, so the agent computes the same sum once
            # more before it clips.
            self.norm = sharded_norm(params_grads, clip._group)
            return clip_gradients(params_grads)

        clip._dygraph_clip = record_and_clip

    def before_step(self, model, hybrid_parallel: bool) -> None:
        """Compute the norm now when the optimizer's clip will not compute it, and forget the previous step's."""
        self.norm = None
        if self.source == "agent":
            self.norm = computed_norm(model, hybrid_parallel)

    def take(self) -> float | None:
        """Return the step's norm as a float (NaN and Inf included), or None when no gradient was clipped."""
        norm, self.norm = self.norm, None
        return None if norm is None else float(norm.reshape([]).item())


class RecordingGlobalNormClip(ClipGradByGlobalNorm):
    """ClipGradByGlobalNorm of dense dygraph gradients that keeps the global norm it computes in its capture.

    It computes the norm and scales the gradients as Paddle 3.3.1's
    ClipGradByGlobalNorm does for dense tensors: squared L2 norms by
    Paddle's `squared_l2_norm` kernel, summed per data type, then scaled
    by clip_norm / max(norm, clip_norm). Sparse (SelectedRows) and
    auto-parallel gradients go to Paddle's own clip, with the norm
    computed once more beforehand.
    """

    def __init__(self, clip: ClipGradByGlobalNorm, capture: GradientNormCapture):
        super().__init__(clip.clip_norm, clip.group_name, clip.auto_skip_clip)
        self.capture = capture

    @paddle.no_grad()
    def _dygraph_clip(self, params_grads):
        clipped = [(param, grad) for param, grad in params_grads
                   if grad is not None and getattr(param, "need_clip", True) is not False]
        if not clipped:
            return params_grads
        if any(grad.is_selected_rows() or grad.is_dist() for _, grad in clipped):
            self.capture.norm = paddle.sqrt(sum_of_squares([grad for _, grad in clipped]))
            return super()._dygraph_clip(params_grads)

        norm = paddle.sqrt(sum_of_squares([grad for _, grad in clipped]))
        self.capture.norm = norm
        limit = paddle.full([1], self.clip_norm, dtype=norm.dtype)
        if not self.auto_skip_clip:
            scale = limit / paddle.maximum(norm, limit)
        elif bool(norm > limit):
            scale = limit / norm
        else:
            return [(param, grad) for param, grad in params_grads if grad is not None]
        return [(param, scaled(grad, scale) if getattr(param, "need_clip", True) is not False else grad)
                for param, grad in params_grads if grad is not None]


def scaled(grad, scale):
    """Multiply `grad` by `scale` in place where Paddle allows it (a dense tensor of rank 1 or more), else into a new tensor."""
    factor = scale if scale.dtype == grad.dtype else scale.astype(grad.dtype)
    if grad._is_initialized() and grad.is_dense() and len(grad.shape) != 0:
        grad.multiply_(factor)
        return grad
    return paddle.multiply(grad, factor)


def sum_of_squares(grads):
    """Return the sum of the squared L2 norms of `grads`: float64 when a gradient is float64, else float32.

    Like ClipGradByGlobalNorm, it adds the float16 and bfloat16 squares among
    themselves first, then the float32 and the float64 ones, and casts each
    partial sum to the result's type.
    """
    squares = [paddle.nn.clip._squared_l2_norm(grad) for grad in grads]
    low = [square for square in squares if square.dtype in LOW_PRECISION]
    single = [square for square in squares if square.dtype == paddle.float32]
    double = [square for square in squares if square.dtype not in LOW_PRECISION and square.dtype != paddle.float32]
    dtype = paddle.float64 if double else paddle.float32
    partial = [paddle.stack(group).sum().astype(dtype) for group in (low, single, double) if group]
    return paddle.stack(partial).sum()


def sharded_norm(params_grads, group):
    """Return the global norm that GroupShardedClipGrad computes from the `(parameter, gradient)` pairs it clips.

    Each rank clips the gradients of the parameters it owns (stage 2) or of its
    slices of them (stage 3), so their squares are summed over the sharding
    group. Stage 3 keeps small parameters whole on every rank (they have the
    attribute `unslice`), and their squares count once.
    """
    clipped = [(param, grad) for param, grad in params_grads
               if grad is not None and getattr(param, "need_clip", True) is not False]
    owned = [grad for param, grad in clipped if not hasattr(param, "unslice")]
    whole = [grad for param, grad in clipped if hasattr(param, "unslice")]
    owned_sum = sum_of_squares(owned).astype("float32") if owned else paddle.zeros([], dtype="float32")
    paddle.distributed.all_reduce(owned_sum, group=group)
    whole_sum = sum_of_squares(whole).astype("float32") if whole else paddle.zeros([], dtype="float32")
    return paddle.sqrt(owned_sum + whole_sum)


def computed_norm(model, hybrid_parallel: bool):
    """Return the global norm of the model's gradients as a tensor, or None when no parameter has a gradient.

    The agent computes it when the optimizer has no clip to read it from. Under
    hybrid parallelism the squares of tensor-parallel (distributed) and other
    parameters are summed over the groups exactly as HybridParallelClipGrad
    sums them, by its own `_global_norm`. Pipeline parameters shared between
    stages count once, on the stage that has them first.

    NOTE: under sharding, `_global_norm` also sums over the sharding group
    the gradients of parameters that other ranks own and update. No test
    runs sharding without a clip, so this case is unchecked.
    """
    distributed, replicated = [], []
    for param in model.parameters():
        grad = getattr(param, "main_grad", None)
        grad = param.grad if grad is None else grad
        if grad is None or not getattr(param, "is_firstly_shared", True):
            continue
        (distributed if param.is_distributed else replicated).append(grad)
    if not distributed and not replicated:
        return None
    if not hybrid_parallel:
        return paddle.sqrt(sum_of_squares(distributed + replicated))

    from paddle.distributed import fleet

    squares = [sum_of_squares(grads).astype("float32") if grads else paddle.zeros([], dtype="float32")
               for grads in (distributed, replicated)]
    HybridParallelClipGrad(None, fleet.get_hybrid_communicate_group())._global_norm(*squares)
    return paddle.sqrt(squares[0] + squares[1])


def innermost_optimizer(optimizer):
    """Return the optimizer that HybridParallelOptimizer, the sharding optimizers and MixPrecisionOptimizer wrap.

    The wrappers forward attribute reads to the wrapped optimizer, so their
    own attributes are read from `vars()`. Paddle's sharding stage 3 sets the
    `_optim` of the optimizer it wraps to that optimizer itself, so the search
    stops at an optimizer it has already seen.
    """
    seen = {id(optimizer)}
    while True:
        attributes = vars(optimizer)
        inner = attributes.get("_inner_opt", attributes.get("_optim"))
        if inner is None or id(inner) in seen:
            return optimizer
        seen.add(id(inner))
        optimizer = inner
