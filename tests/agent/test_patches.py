"""Fixes of the installed Paddle stack: the MoE routing slots, sharding on the CPU, and the probes that switch them on."""

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from agent.workloads import patches  # noqa: E402


class Gate:
    def __init__(self, top_k: int, num_experts: int):
        self.top_k = top_k
        self.num_experts = num_experts


def slots_by_loop(topk_idx: np.ndarray, num_experts: int, capacity: int) -> np.ndarray:
    """Give each (token, expert) pair the next free slot of the expert, first choices of all tokens first."""
    tokens, top_k = topk_idx.shape
    out = np.zeros((tokens, num_experts, capacity), dtype="int32")
    used = [0] * num_experts
    for choice in range(top_k):
        for token in range(tokens):
            expert = topk_idx[token, choice]
            if used[expert] < capacity:
                out[token, expert, used[expert]] = 1
            used[expert] += 1
    return out


@pytest.mark.parametrize(("tokens", "top_k", "experts", "capacity", "seed"),
                         [(6, 2, 4, 3, 0), (16, 2, 4, 2, 1), (9, 1, 3, 9, 2), (12, 3, 5, 4, 3)])
def test_moe_slots_match_loop(tokens, top_k, experts, capacity, seed):
    rng = np.random.default_rng(seed)
    topk_idx = np.stack([rng.choice(experts, size=top_k, replace=False) for _ in range(tokens)]).astype("int64")

    slots = patches.moe_priority_same_dtype(Gate(top_k, experts), paddle.to_tensor(topk_idx), capacity)

    assert slots.dtype == paddle.int32
    assert np.array_equal(slots.numpy(), slots_by_loop(topk_idx, experts, capacity))


def test_fix_applied_where_fault_shows():
    from paddlenlp.transformers.moe_gate import PretrainedMoEGate

    applied = patches.apply()

    if "moe_priority_same_dtype" in applied:
        assert PretrainedMoEGate._priority is patches.moe_priority_same_dtype
    assert not patches._moe_priority_fails()


def test_apply_probes_unapplied_fixes_only(monkeypatch):
    probed, installed = [], []

    def fix(name: str, fault_shows: bool):
        return patches.Fix(name, lambda: probed.append(name) or fault_shows, lambda: installed.append(name), f"{name} fixed")

    monkeypatch.setattr(patches, "FIXES", (fix("first", True), fix("second", False), fix("third", True)))
    monkeypatch.setattr(patches, "APPLIED", [])

    assert patches.apply() == ["first", "third"]
    assert patches.apply() == ["first", "third"]
    assert probed == ["first", "second", "third", "second"]
    assert installed == ["first", "third"]


def test_cause_int32_cumsum_promotes():
    # The fault the fix works around: Paddle's cumsum turns int32 into int64, and int64 x int32 is refused.
    mask = paddle.to_tensor([[1, 0], [0, 1]], dtype="int32")

    assert paddle.cumsum(mask, axis=0).dtype == paddle.int64
    with pytest.raises(TypeError, match="int64"):
        paddle.cumsum(mask, axis=0) * mask


def test_param_storage_keeps_cpu_values():
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_storage import ParamStorage

    patches.apply()
    first = paddle.create_parameter([2, 3], "float32", default_initializer=paddle.nn.initializer.Constant(1.5))
    second = paddle.create_parameter([4], "float32", default_initializer=paddle.nn.initializer.Constant(-2.0))
    storage = ParamStorage(size=10, dtype=first.dtype, device="cpu")

    storage.add_rank_params([first, second], {first.name: 0, second.name: 0})

    assert first.shape == [2, 3]
    assert np.array_equal(first.numpy(), np.full((2, 3), 1.5, dtype="float32"))
    assert np.array_equal(second.numpy(), np.full(4, -2.0, dtype="float32"))
    assert np.array_equal(storage.buffer.numpy(), np.array([1.5] * 6 + [-2.0] * 4, dtype="float32"))


def test_cause_cpu_copy_shares_memory():
    # The fault behind the ParamStorage fix: on the CPU, .cpu() returns a tensor that loses its data when the source is cleared.
    source = paddle.ones([2]).cpu()
    copy = source.cpu()

    source._clear_data()

    assert not copy._is_initialized()


def test_stage3_fixes_leave_no_fault():
    applied = patches.apply()

    if paddle.get_device() == "cpu":
        assert {"stage3_build_check_on_cpu", "sharded_clip_on_cpu", "device2cpu_on_cpu"} <= set(applied)
    assert not patches._stage3_rejects_cpu_build()
    assert not patches._sharded_clip_fails_on_cpu()
    assert not patches._device2cpu_loses_cpu_tensor()


def test_stage3_build_check_passes_for_cpu_only():
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_stage3 import GroupShardedStage3

    patches.apply()

    # An invalid exclude_layer is rejected right after the build check, so reaching that assertion means the check passed.
    with pytest.raises(AssertionError, match="exclude_layers"):
        GroupShardedStage3(None, None, device="cpu", exclude_layer="not a list")
    if not paddle.is_compiled_with_cuda():
        with pytest.raises(AssertionError, match="Only support CUDA"):
            GroupShardedStage3(None, None, device="gpu", exclude_layer="not a list")


def test_stage3_device2cpu_keeps_cpu_values():
    from paddle.distributed.fleet.meta_parallel.sharding import group_sharded_stage3

    patches.apply()
    source = paddle.to_tensor([1.0, -2.5, 3.0]).cpu()

    moved = group_sharded_stage3._device2cpu(source)

    assert moved.place.is_cpu_place()
    assert np.array_equal(moved.numpy(), np.array([1.0, -2.5, 3.0], dtype="float32"))
    assert not source._is_initialized()


def test_stage3_device2cpu_converts_to_float32():
    from paddle.distributed.fleet.meta_parallel.sharding import group_sharded_stage3

    patches.apply()
    source = paddle.to_tensor([1.0, -2.5, 3.0], dtype="float16").cpu()

    moved = group_sharded_stage3._device2cpu(source, convert_dtype=True)

    # As in Paddle, the float32 cast is cleared, not the float16 source.
    assert moved.dtype == paddle.float32
    assert np.array_equal(moved.numpy(), np.array([1.0, -2.5, 3.0], dtype="float32"))
    assert source._is_initialized()


def test_sharded_clip_scales_on_cpu():
    from types import SimpleNamespace

    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_utils import GroupShardedClipGrad

    patches.apply()
    # A group this process is not a member of: Paddle's all-reduce returns at once, so the norm is this process's own.
    outside = SimpleNamespace(is_member=lambda: False, name="outside", id=-1, ranks=[], nranks=0, rank=-1)
    clip = GroupShardedClipGrad(paddle.nn.ClipGradByGlobalNorm(1.0), "cpu", outside)
    sliced = paddle.create_parameter([2], "float32")
    whole = paddle.create_parameter([1], "float32")
    whole.unslice = True

    clipped = clip._dygraph_clip([(sliced, paddle.to_tensor([3.0, 0.0])), (whole, paddle.to_tensor([4.0]))])

    # The global norm is sqrt(3^2 + 4^2) = 5, so every gradient is scaled by 1 / 5.
    assert np.allclose(clipped[0][1].numpy(), [0.6, 0.0])
    assert np.allclose(clipped[1][1].numpy(), [0.8])
    assert paddle.get_device() == "cpu"
    assert clip._device == "cpu"


# Run in a fresh interpreter: the resources of this process before and after the gloo probe, as JSON.
PROBE_RESOURCES = """
import json, os
from pathlib import Path
from agent.workloads import patches


def listening_ports():
    # The TCP ports whose listening socket is one of this process's file descriptors (Linux /proc).
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            sockets.add(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor that listed the folder, closed since
            pass
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and f"socket:[{fields[9]}]" in sockets:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def snapshot():
    return {"ports": listening_ports(), "threads": len(os.listdir("/proc/self/task"))}


before = snapshot()
shared = patches._gloo_group_keys_shared()
print(json.dumps({"before": before, "after": snapshot(), "shared": shared}))
"""


def test_gloo_probe_leaves_nothing_open():
    # The probe's store server, group and communication context must not outlive it in this process.
    import json
    import subprocess
    import sys
    from pathlib import Path

    completed = subprocess.run([sys.executable, "-c", PROBE_RESOURCES], cwd=Path(__file__).resolve().parents[2],
                               capture_output=True, text=True, timeout=300)

    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["shared"] is True
    assert report["after"]["ports"] == report["before"]["ports"]
    assert report["after"]["threads"] <= report["before"]["threads"]
