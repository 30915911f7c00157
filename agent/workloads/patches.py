"""Fixes for known faults of the installed Paddle stack, applied at import time and only where the fault shows.

Each fix probes for its fault first, so that a PaddleNLP release that mends
the fault leaves the fix unapplied. Nothing under site-packages is edited.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

logger = logging.getLogger(__name__)

APPLIED: list[str] = []


def moe_priority_same_dtype(self, topk_idx, capacity: int):
    """Return the [tokens, experts, capacity] int32 one-hot of each token's slot in the experts it is routed to.

    Routing order is choice-major: every token's first choice takes a slot
    before any token's second choice, and a (token, expert) pair whose slot
    is at or past `capacity` gets no slot (an all-zero row). Every integer
    tensor here is int64, so no int64 x int32 product occurs.
    """
    import paddle
    import paddle.nn.functional as F

    choices = paddle.transpose(topk_idx, [1, 0]).reshape([-1])
    routed = F.one_hot(choices, self.num_experts).astype("int64")
    # Slot of each (choice, token) pair in its expert, counting earlier pairs routed to the same expert; -1 if unrouted.
    slot = paddle.cumsum(routed, axis=0) * routed - 1
    slot = paddle.max(slot.reshape([self.top_k, -1, self.num_experts]), axis=0)

    kept = paddle.logical_and(slot >= 0, slot < capacity)
    slot = paddle.where(kept, slot, paddle.zeros_like(slot))
    dispatch = F.one_hot(slot, capacity).astype("int32")
    return dispatch * kept.unsqueeze(-1).astype("int32")


def _moe_priority_fails() -> bool:
    """Return True when PaddleNLP's MoE gate raises on a two-token routing.

    PaddleNLP 3.0.0b4's `PretrainedMoEGate._priority` multiplies
    `paddle.cumsum(mask)` by `mask`, where `mask` is int32. Since Paddle 3.0,
    `paddle.cumsum` returns int64 for int32 input (NumPy's rule), and Paddle's
    type promotion refuses an int64 x int32 product with a TypeError. The
    fault is in the dynamic graph on every device; it shows first on the CPU
    because that is where the tiny Qwen2-MoE preset runs.
    """
    import paddle
    from paddlenlp.transformers.moe_gate import PretrainedMoEGate

    probe = SimpleNamespace(top_k=1, num_experts=2)
    try:
        PretrainedMoEGate._priority(probe, paddle.to_tensor([[0], [1]], dtype="int64"), 2)
    except TypeError:
        return True
    return False


def parallel_env_device_id(self) -> int:
    """Return ParallelEnv's device id, or 0 where Paddle set none (a build with no GPU, XPU or custom device)."""
    return getattr(self, "_device_id", 0)


def _device_id_missing() -> bool:
    """Return True when `paddle.distributed.ParallelEnv().device_id` raises AttributeError.

    Paddle 3.3.1's `ParallelEnv.__init__` sets `_device_id` only for custom
    devices and for builds compiled with CUDA or XPU, so on a CPU-only build
    the property raises. Paddle's `PipelineLayer.__init__` reads the property
    and only stores it, so every pipeline-parallel model fails to build there.
    """
    import paddle.distributed

    try:
        paddle.distributed.ParallelEnv().device_id
    except AttributeError:
        return True
    return False


def apply() -> list[str]:
    """Apply every fix whose fault the installed stack shows. Return the names of the fixes applied so far."""
    if "moe_priority_same_dtype" not in APPLIED and _moe_priority_fails():
        from paddlenlp.transformers.moe_gate import PretrainedMoEGate

        PretrainedMoEGate._priority = moe_priority_same_dtype
        APPLIED.append("moe_priority_same_dtype")
        logger.debug("patched PaddleNLP PretrainedMoEGate._priority to keep int64 throughout")
    if "parallel_env_device_id" not in APPLIED and _device_id_missing():
        import paddle.distributed

        paddle.distributed.ParallelEnv.device_id = property(parallel_env_device_id)
        APPLIED.append("parallel_env_device_id")
        logger.debug("patched Paddle ParallelEnv.device_id to return 0 where no device id is set")
    return list(APPLIED)
