"""Fixes for known faults of the installed Paddle stack, applied at import time and only where the fault shows.

Each fix probes for its fault first, so that a PaddleNLP release that mends
the fault leaves the fix unapplied. Nothing under site-packages is edited.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

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


def broadcast_input_data_cpu(original):
    """Return Paddle's `broadcast_input_data`, extended to the CPU; on other devices it calls `original`.

    On the CPU the tensor-parallel ranks' inputs are broadcast from the
    group's first rank over gloo, with the helpers Paddle uses on the GPU.
    """
    def broadcast_input_data(hcg, *inputs, **kwargs):
        import paddle
        from paddle.distributed.fleet.utils import hybrid_parallel_util

        if paddle.get_device() != "cpu":
            return original(hcg, *inputs, **kwargs)
        place = paddle.CPUPlace()
        if inputs:
            inputs = hybrid_parallel_util._broadcast_nested_data(hcg, "cpu", place, inputs)
        if kwargs:
            kwargs = hybrid_parallel_util._broadcast_nested_data(hcg, "cpu", place, kwargs)
        return inputs, kwargs

    return broadcast_input_data


def _broadcast_input_fails_on_cpu() -> bool:
    """Return True when the current device is the CPU and Paddle's `broadcast_input_data` refuses it.

    Paddle 3.3.1's `TensorParallel` wrapper broadcasts every forward pass's
    inputs over the tensor-parallel group, and `broadcast_input_data` asserts
    that the device is a GPU, an XPU or a custom device before it looks at
    the inputs. Called with no inputs, it does nothing else.
    """
    import paddle
    from paddle.distributed.fleet.utils import hybrid_parallel_util

    if paddle.get_device() != "cpu":
        return False
    try:
        hybrid_parallel_util.broadcast_input_data(None)
    except AssertionError:
        return True
    return False


def _gather_last_axis(tensor, group):
    """Return the parts of `tensor` on the ranks of `group`, concatenated along the last axis in rank order."""
    import paddle

    parts = []
    paddle.distributed.all_gather(parts, tensor, group=group, sync_op=True)
    return paddle.concat(parts, axis=-1)


def _own_part(tensor, group):
    """Return this rank's part of `tensor` split evenly along the last axis over `group`."""
    return tensor.split(group.nranks, axis=-1)[group.rank]


def _sum_over(tensor, group):
    """Return `tensor` summed over `group` (in place), with gloo's synchronous all-reduce."""
    import paddle

    paddle.distributed.all_reduce(tensor, group=group, sync_op=True)
    return tensor


def _cpu_layers():
    """Return the four tensor-parallel communication layers, as PyLayers built from gloo's synchronous collectives.

    Each does what Paddle's CUDA kernel of the same name does: identity and
    all-reduce are each other's gradient, and so are concatenation along the
    last axis and the split that keeps this rank's part.
    """
    from paddle.autograd import PyLayer

    class Identity(PyLayer):
        @staticmethod
        def forward(ctx, tensor, group):
            ctx.group = group
            return tensor.clone()

        @staticmethod
        def backward(ctx, grad):
            return _sum_over(grad.clone(), ctx.group)

    class AllReduce(PyLayer):
        @staticmethod
        def forward(ctx, tensor, group):
            return _sum_over(tensor, group)

        @staticmethod
        def backward(ctx, grad):
            return grad

    class Concat(PyLayer):
        @staticmethod
        def forward(ctx, tensor, group):
            ctx.group = group
            return _gather_last_axis(tensor, group)

        @staticmethod
        def backward(ctx, grad):
            return _own_part(grad, ctx.group).clone()

    class Split(PyLayer):
        @staticmethod
        def forward(ctx, tensor, group):
            ctx.group = group
            return _own_part(tensor, group).clone()

        @staticmethod
        def backward(ctx, grad):
            return _gather_last_axis(grad, ctx.group)

    return Identity, AllReduce, Concat, Split


def mp_ops_on_cpu(mp_ops):
    """Return replacements of `mp_ops`' `_c_identity`, `_mp_allreduce`, `_c_concat` and `_c_split` that also run on the CPU.

    They take the arguments of Paddle's functions. A tensor on another
    device, or a process outside `group`, goes to Paddle's own function.
    """
    from paddle.distributed import ReduceOp
    from paddle.distributed.communication.group import _get_global_group

    identity, all_reduce, concat, split = _cpu_layers()
    original_identity, original_all_reduce = mp_ops._c_identity, mp_ops._mp_allreduce
    original_concat, original_split = mp_ops._c_concat, mp_ops._c_split

    def on_cpu(tensor, group) -> bool:
        return tensor.place.is_cpu_place() and (group is None or group.is_member())

    def _c_identity(tensor, group=None, skip_c_identity_dynamic=False):
        if not on_cpu(tensor, group):
            return original_identity(tensor, group=group, skip_c_identity_dynamic=skip_c_identity_dynamic)
        return tensor if skip_c_identity_dynamic else identity.apply(tensor, group or _get_global_group())

    def _mp_allreduce(tensor, op=ReduceOp.SUM, group=None, use_calc_stream=True, use_model_parallel=True,
                      skip_c_identity_dynamic=False):
        if not on_cpu(tensor, group) or op != ReduceOp.SUM:
            return original_all_reduce(tensor, op=op, group=group, use_calc_stream=use_calc_stream,
                                       use_model_parallel=use_model_parallel, skip_c_identity_dynamic=skip_c_identity_dynamic)
        # Paddle's gradient of this sum is the identity whether or not skip_c_identity_dynamic is set.
        return all_reduce.apply(tensor, group or _get_global_group())

    def _c_concat(tensor, group=None):
        if not on_cpu(tensor, group):
            return original_concat(tensor, group=group)
        return concat.apply(tensor, group or _get_global_group())

    def _c_split(tensor, group=None):
        if not on_cpu(tensor, group):
            return original_split(tensor, group=group)
        return split.apply(tensor, group or _get_global_group())

    return {"_c_identity": _c_identity, "_mp_allreduce": _mp_allreduce, "_c_concat": _c_concat, "_c_split": _c_split}


def _mp_ops_fail_on_cpu() -> bool:
    """Return True when Paddle's tensor-parallel communication kernels refuse a CPU tensor.

    PaddleNLP's column- and row-parallel layers communicate through
    `paddle.distributed.fleet.layers.mpu.mp_ops`. In Paddle 3.3.1 the CPU
    kernels of c_identity, c_concat and c_split raise `Do not support
    c_identity for cpu kernel now`, and the all-reduce goes through gloo's
    `all_reduce_on_calc_stream`, which raises NotImplementedError. The probe
    runs c_identity on a CPU tensor, which raises before any communication.
    """
    import paddle

    try:
        paddle._C_ops.c_identity(paddle.zeros([1]).cpu(), 0, True, True)
    except RuntimeError:
        return True
    return False


class _ModuleView:
    """A view of a module that passes every attribute through, except those its subclass defines."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)


class _CudaBuildView(_ModuleView):
    """A view of `paddle.base.core` that reports a CUDA build, for the build checks of Paddle's sharding classes."""

    @staticmethod
    def is_compiled_with_cuda() -> bool:
        return True


class _NumberedCpuView(_ModuleView):
    """A view of `paddle` or `paddle.device` in which `get_device()` names the CPU "cpu:0", with the device number Paddle parses."""

    def get_device(self) -> str:
        device = self._module.get_device()
        return "cpu:0" if device == "cpu" else device


@contextlib.contextmanager
def _replaced(module, name: str, value):
    """Replace the global `name` of `module` with `value` while the block runs."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


@contextlib.contextmanager
def _cpu_accepted_by(module):
    """Let the stage-2 optimizer in `module` accept the CPU while the block runs.

    Paddle 3.3.1's `GroupShardedOptimizerStage2.__init__` asserts a CUDA, XPU
    or custom-device build, and reads a device number from
    `paddle.get_device().split(":")[1]`, which "cpu" lacks. Inside the block
    `module` reads a CUDA build from `core` and the device "cpu:0" from
    `paddle`. It uses neither to choose where to run: its `device` argument,
    here "cpu", does that.
    """
    with _replaced(module, "core", _CudaBuildView(module.core)), \
            _replaced(module, "paddle", _NumberedCpuView(module.paddle)):
        yield


def group_sharded_parallel_cpu(original):
    """Return Paddle's `group_sharded_parallel`, extended to stages 2 and 3 on the CPU; otherwise it calls `original`.

    On the CPU, stage 2 (level "os" or "os_g") wraps the optimizer and the
    model in Paddle's own stage-2 classes, and stage 3 ("p_g_os") wraps the
    model in `GroupShardedStage3`, all with `device="cpu"`, as `original`
    does on a card. Stage 3 on the CPU also needs the fixes
    `stage3_build_check_on_cpu`, `sharded_clip_on_cpu` and
    `device2cpu_on_cpu`.
    """
    def group_sharded_parallel(model, optimizer, level, scaler=None, group=None, offload=False, sync_buffers=False,
                               buffer_max_size=2**23, segment_size=2**20, sync_comm=False, dp_group=None,
                               exclude_layer=None):
        import paddle
        from paddle.distributed.fleet.meta_parallel.sharding import (
            group_sharded_optimizer_stage2, group_sharded_stage2, group_sharded_stage3)
        from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_utils import GroupShardedScaler

        if paddle.get_device() != "cpu" or level not in ("os", "os_g", "p_g_os"):
            return original(model, optimizer, level, scaler=scaler, group=group, offload=offload,
                            sync_buffers=sync_buffers, buffer_max_size=buffer_max_size, segment_size=segment_size,
                            sync_comm=sync_comm, dp_group=dp_group, exclude_layer=exclude_layer)
        if level == "p_g_os":
            model = group_sharded_stage3.GroupShardedStage3(
                model, optimizer=optimizer, group=group, sync_buffers=sync_buffers, segment_size=segment_size,
                offload=offload, sync_comm=sync_comm, dp_group=dp_group, device="cpu", exclude_layer=exclude_layer)
        else:
            with _cpu_accepted_by(group_sharded_optimizer_stage2):
                optimizer = group_sharded_optimizer_stage2.GroupShardedOptimizerStage2(
                    params=optimizer._parameter_list, optim=optimizer, group=group, offload=offload,
                    dp_group=dp_group, device="cpu")
            model = group_sharded_stage2.GroupShardedStage2(model, optimizer, group=group, sync_buffers=sync_buffers,
                                                            buffer_max_size=buffer_max_size, dp_group=dp_group,
                                                            device="cpu")
        if isinstance(scaler, paddle.amp.GradScaler):
            scaler = GroupShardedScaler(scaler)
        return model, optimizer, scaler

    return group_sharded_parallel


def _group_sharded_rejects_cpu() -> bool:
    """Return True when the current device is the CPU and Paddle's `group_sharded_parallel` rejects it.

    Paddle 3.3.1's `group_sharded_parallel`, which PaddleNLP's Trainer calls
    for sharding stages 2 and 3, asserts that the device is a GPU, an XPU or
    a custom device before it checks its arguments, so the probe passes none.
    """
    import paddle
    from paddle.distributed import sharding

    if paddle.get_device() != "cpu":
        return False
    try:
        sharding.group_sharded_parallel(None, None, "os_g")
    except AssertionError as error:
        return "only support gpu" in str(error)
    return False


def param_storage_on_cpu(original):
    """Return `ParamStorage.add_rank_params` that, for a CPU storage, makes the parameters views of its buffer in place."""
    def add_rank_params(self, trainable_params, param2align, convert_gpu=True):
        if self._device == "cpu" and self.buffer.place.is_cpu_place():
            convert_gpu = False
        return original(self, trainable_params, param2align, convert_gpu=convert_gpu)

    return add_rank_params


def _param_storage_fails_on_cpu() -> bool:
    """Return True when Paddle's stage-2 `ParamStorage` loses or rejects a CPU parameter.

    Paddle 3.3.1's `ParamStorage.add_rank_params` copies each parameter to
    host memory with `param.cpu()`, clears the parameter, and then moves the
    flat buffer to the card. On the CPU `param.cpu()` shares the parameter's
    memory, so clearing it leaves nothing to copy ("Tensor not initialized
    yet"), and the move to the card raises on a CPU-only build.
    """
    import paddle
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_storage import ParamStorage

    if paddle.get_device() != "cpu":
        return False
    parameter = paddle.create_parameter([2], "float32", default_initializer=paddle.nn.initializer.Constant(1.0))
    storage = ParamStorage(size=2, dtype=parameter.dtype, device="cpu")
    try:
        storage.add_rank_params([parameter], {parameter.name: 0})
    except (OSError, RuntimeError):
        return True
    return False


def stage3_build_check_on_cpu(original):
    """Return `GroupShardedStage3.__init__` that, for `device="cpu"`, passes Paddle's build check.

    While `original` builds a CPU model, its module reads a CUDA build from
    `core`. The class uses the build only for that check: its `device`
    argument, and `paddle.get_device()` for the current device, decide where
    it runs.
    """
    import inspect

    from paddle.distributed.fleet.meta_parallel.sharding import group_sharded_stage3

    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        device = signature.bind(self, *args, **kwargs).arguments.get("device")
        if device != "cpu":
            return original(self, *args, **kwargs)
        with _replaced(group_sharded_stage3, "core", _CudaBuildView(group_sharded_stage3.core)):
            return original(self, *args, **kwargs)

    return __init__


def _stage3_rejects_cpu_build() -> bool:
    """Return True when Paddle's `GroupShardedStage3` rejects a build without CUDA, XPU or a custom device.

    Paddle 3.3.1's `GroupShardedStage3.__init__` asserts such a build before
    anything else ("Only support CUDA / XPU / CustomDevice."). The probe
    passes an invalid `exclude_layer`, which the constructor rejects with
    another assertion right after the build check, before it creates a
    communication group or touches the model.
    """
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_stage3 import GroupShardedStage3

    try:
        GroupShardedStage3(None, None, device="cpu", exclude_layer="not a list")
    except AssertionError as error:
        return "Only support CUDA" in str(error)
    return False


class _CpuClipPaddleView(_ModuleView):
    """A view of the `paddle` module for GroupShardedClipGrad on the CPU.

    Its `device.get_device()` names the CPU "cpu:0", and its `set_device`
    accepts that name back, because Paddle's `device_guard` restores the
    device that it read.
    """

    def __init__(self, module):
        super().__init__(module)
        self.device = _NumberedCpuView(module.device)

    def set_device(self, device: str):
        return self._module.set_device("cpu" if device == "cpu:0" else device)


def sharded_clip_on_cpu(original):
    """Return `GroupShardedClipGrad._dygraph_clip` that, on the CPU, computes and all-reduces the norm there.

    Paddle 3.3.1's clip reads a device number from its device string, which
    "cpu" lacks (IndexError). When the current device is the CPU, it also
    moves the norm to a GPU, XPU or custom device before the all-reduce
    (ValueError on a CPU-only build). For a clip built for "cpu" while the
    current device is the CPU, `original` runs with the device "cpu:0", and
    its module reads the current device as "cpu:0" too, so the norm stays on
    the CPU and gloo all-reduces it. Otherwise `original` runs unchanged.
    """
    from paddle.distributed.fleet.meta_parallel.sharding import group_sharded_utils

    @functools.wraps(original)
    def _dygraph_clip(self, params_grads):
        if self._device != "cpu" or group_sharded_utils.paddle.get_device() != "cpu":
            return original(self, params_grads)
        self._device = "cpu:0"
        try:
            with _replaced(group_sharded_utils, "paddle", _CpuClipPaddleView(group_sharded_utils.paddle)):
                return original(self, params_grads)
        finally:
            self._device = "cpu"

    return _dygraph_clip


def _sharded_clip_fails_on_cpu() -> bool:
    """Return True when the current device is the CPU and Paddle's `GroupShardedClipGrad` cannot clip there.

    Stage 3 builds the clip with `paddle.get_device()`, here "cpu". Paddle
    3.3.1 raises IndexError on reading a device number from it, and without
    that fault would raise ValueError on moving the norm to a card. The probe
    clips no gradients, for a group that this process is not a member of, so
    that a Paddle without either fault skips the all-reduce.
    """
    import paddle
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_utils import GroupShardedClipGrad

    if paddle.get_device() != "cpu":
        return False
    outside = SimpleNamespace(is_member=lambda: False, name="agent-probe", id=-1, ranks=[], nranks=0, rank=-1)
    clip = GroupShardedClipGrad(paddle.nn.ClipGradByGlobalNorm(1.0), "cpu", outside)
    try:
        clip._dygraph_clip([])
    except (IndexError, ValueError):
        return True
    return False


def device2cpu_on_cpu(original):
    """Return stage 3's `_device2cpu` that, for a CPU tensor, returns a copy before it clears the tensor.

    `original` copies a tensor to host memory with `.cpu()` and then clears
    the tensor. For a CPU tensor `.cpu()` shares the memory, so the copy is
    cleared too. Stage 3 calls it with offload, and when the Trainer gathers
    the whole parameters to save a checkpoint.
    """
    @functools.wraps(original)
    def _device2cpu(trans_param, convert_dtype=False):
        if not trans_param.place.is_cpu_place():
            return original(trans_param, convert_dtype)
        import paddle
        from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_utils import Type

        if convert_dtype:
            trans_param = paddle.cast(trans_param, Type.fp32.value)
        copy = trans_param.detach().clone()
        trans_param._clear_data()
        return copy

    return _device2cpu


def _device2cpu_loses_cpu_tensor() -> bool:
    """Return True when the current device is the CPU and Paddle's stage-3 `_device2cpu` empties a CPU tensor's copy.

    Paddle 3.3.1 does. The fix is meant for CPU runs, so on other devices the probe reports no fault.
    """
    import paddle
    from paddle.distributed.fleet.meta_parallel.sharding import group_sharded_stage3

    if paddle.get_device() != "cpu":
        return False
    moved = group_sharded_stage3._device2cpu(paddle.ones([2]).cpu())
    return not moved._is_initialized()


# The TCPStores of the gloo groups that this process created, kept alive for as long as their groups.
_GROUP_STORES: list = []
# A group id far above the ids Paddle gives its groups (10 and up, one per new_group call).
_PROBE_GROUP_ID = 1 << 30
STORE_TIMEOUT_SECONDS = 900


def _open_group_store(global_store, group_rank: int, group_id: int):
    """Return a TCPStore of the group's own, served by its rank 0, whose address travels through `global_store`."""
    from paddle.base import core
    from paddle.distributed.collective import _get_global_env

    key = f"agent/gloo-group-store/{group_id}"
    if group_rank != 0:
        host, port = bytes(global_store.get(key)).decode().rsplit(":", 1)
        return core.TCPStore(host, int(port), False, 0, STORE_TIMEOUT_SECONDS)
    host = _get_global_env().current_endpoint.rsplit(":", 1)[0]
    # NOTE: another process may take the port between this socket's close and the server's bind.
    with socket.socket() as free:
        free.bind((host, 0))
        port = free.getsockname()[1]
    store = core.TCPStore(host, port, True, 0, STORE_TIMEOUT_SECONDS)
    global_store.set(key, f"{host}:{port}".encode())
    return store


def gloo_group_store(original):
    """Return Paddle's `_new_process_group_impl`, changed to give each gloo group a TCPStore of its own.

    Other backends get the shared store, as in `original`.
    """
    def _new_process_group_impl(backend, store, rank, world_size, group_name, pg_options, group_id=0, **kwargs):
        if backend == "gloo":
            store = _open_group_store(store, rank, group_id)
            _GROUP_STORES.append(store)
        return original(backend, store, rank, world_size, group_name, pg_options, group_id, **kwargs)

    return _new_process_group_impl


# Run by _gloo_group_keys_shared in a child interpreter. It forms a gloo group of one process on a private store and
# prints "shared" when the rendezvous wrote the unprefixed key "0". An integer add on that key fails when the key
# contains an address, and it returns 0 on a missing key.
_GLOO_PROBE = f"""
import socket
from paddle.base import core

with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
store = core.TCPStore("127.0.0.1", port, True, 1, {STORE_TIMEOUT_SECONDS})
core.ProcessGroupGloo.create(store, 0, 1, {_PROBE_GROUP_ID})
try:
    store.add("0", 0)
except ValueError:
    print("shared")
else:
    print("separate")
"""
PROBE_TIMEOUT_SECONDS = 300


def _launched_processes() -> int:
    """Return the number of processes of this job as the launcher set it, or 1 outside a launched job."""
    try:
        return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    except ValueError:
        return 1


@functools.cache
def _gloo_group_keys_shared() -> bool:
    """Return True when a gloo process group's rendezvous writes keys that other groups on the same store also write.

    Paddle 3.3.1's `ProcessGroupGloo` constructor runs gloo's full-mesh
    rendezvous on the store it is given without a group prefix, so every
    group stores each member's address under the member's group rank ("0",
    "1", ...). Only the communication context created next uses a prefix.
    Groups of the same size that form at the same time, such as the
    pipeline groups [0, 2] and [1, 3] of four processes, overwrite each
    other's addresses. A process then connects to a member of the other
    group and fails with `pair.cc:784] connect ... Connection refused` or a
    TIMEOUT.

    The probe (_GLOO_PROBE) runs once per process in a child interpreter,
    which costs one import of Paddle. Run in this process, it would leave
    its group, the group's communication context and its TCPStore behind
    until the process ends. Paddle 3.3.1 keeps every group it creates, and
    its one release call, `ProcessGroupIdMap.destroy`, drops every group of
    the process while the communication context still keeps the store.
    The store's server listens on every interface, not only on 127.0.0.1.
    """
    environment = dict(os.environ)
    # Paddle's ProcessGroup reads the process's global rank from the launcher's variable.
    environment.setdefault("PADDLE_TRAINER_ID", "0")
    try:
        completed = subprocess.run([sys.executable, "-c", _GLOO_PROBE], env=environment, capture_output=True,
                                   text=True, timeout=PROBE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as expired:
        raise RuntimeError(f"the probe of Paddle's gloo groups did not finish within {PROBE_TIMEOUT_SECONDS} s. "
                           f"Its error output ends with: {(expired.stderr or b'')[-2000:]!r}") from None
    verdict = completed.stdout.split()[-1:]
    if completed.returncode != 0 or verdict not in (["shared"], ["separate"]):
        raise RuntimeError(f"the probe of Paddle's gloo groups exited with code {completed.returncode} and printed "
                           f"{completed.stdout[-200:]!r}. Its error output ends with: {completed.stderr[-2000:]}")
    return verdict == ["shared"]


def _install_moe_priority_same_dtype() -> None:
    from paddlenlp.transformers.moe_gate import PretrainedMoEGate

    PretrainedMoEGate._priority = moe_priority_same_dtype


def _install_parallel_env_device_id() -> None:
    import paddle.distributed

    paddle.distributed.ParallelEnv.device_id = property(parallel_env_device_id)


def _install_broadcast_input_data_cpu() -> None:
    from paddle.distributed.fleet.meta_parallel import tensor_parallel

    tensor_parallel.broadcast_input_data = broadcast_input_data_cpu(tensor_parallel.broadcast_input_data)


def _install_mp_ops_on_cpu() -> None:
    import paddle.distributed.collective as collective
    from paddle.distributed.fleet.layers.mpu import mp_ops

    for name, function in mp_ops_on_cpu(mp_ops).items():
        setattr(mp_ops, name, function)
        setattr(collective, name, function)


def _install_group_sharded_parallel_cpu() -> None:
    from paddle.distributed import sharding
    from paddle.distributed.sharding import group_sharded

    replacement = group_sharded_parallel_cpu(group_sharded.group_sharded_parallel)
    sharding.group_sharded_parallel = group_sharded.group_sharded_parallel = replacement


def _install_param_storage_on_cpu() -> None:
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_storage import ParamStorage

    ParamStorage.add_rank_params = param_storage_on_cpu(ParamStorage.add_rank_params)


def _install_stage3_build_check_on_cpu() -> None:
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_stage3 import GroupShardedStage3

    GroupShardedStage3.__init__ = stage3_build_check_on_cpu(GroupShardedStage3.__init__)


def _install_sharded_clip_on_cpu() -> None:
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_utils import GroupShardedClipGrad

    GroupShardedClipGrad._dygraph_clip = sharded_clip_on_cpu(GroupShardedClipGrad._dygraph_clip)


def _install_device2cpu_on_cpu() -> None:
    from paddle.distributed.fleet.meta_parallel.sharding import group_sharded_stage3

    group_sharded_stage3._device2cpu = device2cpu_on_cpu(group_sharded_stage3._device2cpu)


def _gloo_group_keys_shared_among_processes() -> bool:
    # Groups form only among several processes, so a one-process run skips the probe and its import of Paddle.
    return _launched_processes() > 1 and _gloo_group_keys_shared()


def _install_gloo_group_store() -> None:
    import paddle.distributed.collective as collective

    collective._new_process_group_impl = gloo_group_store(collective._new_process_group_impl)


@dataclass(frozen=True)
class Fix:
    """One fix: the probe that returns True while its fault shows, the function that installs it, and the debug log line."""

    name: str
    fault_shows: Callable[[], bool]
    install: Callable[[], None]
    log_message: str


# The order in which apply() probes and installs the fixes.
FIXES: tuple[Fix, ...] = (
    Fix("moe_priority_same_dtype", _moe_priority_fails, _install_moe_priority_same_dtype,
        "patched PaddleNLP PretrainedMoEGate._priority to keep int64 throughout"),
    Fix("parallel_env_device_id", _device_id_missing, _install_parallel_env_device_id,
        "patched Paddle ParallelEnv.device_id to return 0 where no device id is set"),
    Fix("broadcast_input_data_cpu", _broadcast_input_fails_on_cpu, _install_broadcast_input_data_cpu,
        "patched Paddle's TensorParallel to broadcast its inputs on the CPU too"),
    Fix("mp_ops_on_cpu", _mp_ops_fail_on_cpu, _install_mp_ops_on_cpu,
        "patched Paddle's tensor-parallel communication to run on the CPU with gloo"),
    Fix("group_sharded_parallel_cpu", _group_sharded_rejects_cpu, _install_group_sharded_parallel_cpu,
        "patched Paddle's group_sharded_parallel to build sharding stages 2 and 3 on the CPU"),
    Fix("param_storage_on_cpu", _param_storage_fails_on_cpu, _install_param_storage_on_cpu,
        "patched Paddle's stage-2 ParamStorage to keep CPU parameters in place"),
    Fix("stage3_build_check_on_cpu", _stage3_rejects_cpu_build, _install_stage3_build_check_on_cpu,
        "patched Paddle's GroupShardedStage3 to accept the CPU"),
    Fix("sharded_clip_on_cpu", _sharded_clip_fails_on_cpu, _install_sharded_clip_on_cpu,
        "patched Paddle's GroupShardedClipGrad to keep the norm on the CPU"),
    Fix("device2cpu_on_cpu", _device2cpu_loses_cpu_tensor, _install_device2cpu_on_cpu,
        "patched Paddle's stage-3 _device2cpu to copy a CPU tensor before clearing it"),
    Fix("gloo_group_store", _gloo_group_keys_shared_among_processes, _install_gloo_group_store,
        "patched Paddle's new_group to give each gloo group a TCPStore of its own"),
)


def apply() -> list[str]:
    """Apply every fix whose fault the installed stack shows. Return the names of the fixes applied so far.

    A fix already applied is not probed again.
    """
    for fix in FIXES:
        if fix.name not in APPLIED and fix.fault_shows():
            fix.install()
            APPLIED.append(fix.name)
            logger.debug(fix.log_message)
    return list(APPLIED)
