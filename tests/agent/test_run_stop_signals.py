"""A stop signal that Paddle wraps into its own error is recorded as a stop, not as a workload crash."""

import os
import signal

import pytest

from agent.runner.execute import Terminated, run_one, stop_signals_handled
from agent.runner.folder import RunFolder
from agent.workloads.common import WorkloadContext
from certification.records import read_jsonl

WORKLOAD = "pretrain-llama"


def backward_with_signal(number: int):
    """Return a workload runner whose backward pass receives signal `number` inside a PyLayer, as a stage-3 run can."""
    import paddle
    from paddle.autograd import PyLayer

    class SignalInBackward(PyLayer):
        @staticmethod
        def forward(ctx, tensor):
            return tensor * 2

        @staticmethod
        def backward(ctx, gradient):
            os.kill(os.getpid(), number)
            return gradient * 2

    def runner(context):
        tensor = paddle.ones([2])
        tensor.stop_gradient = False
        SignalInBackward.apply(tensor).sum().backward()
        return {}

    return runner


def context(tmp_path) -> WorkloadContext:
    return WorkloadContext(workload_id=WORKLOAD, spec={"kind": "pretrain"}, pack=None, data_root=tmp_path,
                           run_dir=tmp_path, device="cpu")


@pytest.mark.parametrize(("number", "expected"), [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_signal_in_pylayer_stops_run(tmp_path, number, expected):
    folder = RunFolder(tmp_path)

    with pytest.raises(expected) as raised, stop_signals_handled():
        run_one(folder, context(tmp_path), backward_with_signal(number))

    # pytest.raises also accepts a subclass, and Terminated subclasses KeyboardInterrupt.
    assert type(raised.value) is expected
    assert isinstance(raised.value.__cause__, Exception)  # Paddle's own wrapping of the interrupt
    assert [record["event"] for record in read_jsonl(tmp_path / "events.jsonl")] == ["workload_start"]
    assert not (folder.workload_dir(WORKLOAD) / "result.json").exists()


def test_error_without_signal_is_crash(tmp_path):
    folder = RunFolder(tmp_path)

    def runner(context):
        raise OSError("(External) disk failure")

    with stop_signals_handled():
        assert not run_one(folder, context(tmp_path), runner)

    assert [record["event"] for record in read_jsonl(tmp_path / "events.jsonl")] == ["workload_start", "crash"]
