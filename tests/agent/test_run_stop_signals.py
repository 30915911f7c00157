"""A stop signal that Paddle wraps into its own error is recorded as a stop, not as a workload crash."""

import os
import signal
from pathlib import Path

import pytest

from agent.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
from agent.i18n import set_language
from agent.runner import RunRequest
from agent.runner.execute import Launch, Terminated, resume_command, run_one, run_stopped, stop_signals_handled
from agent.runner.folder import RunFolder
from agent.workloads.common import WorkloadContext
from certification.records import read_jsonl

WORKLOAD = "pretrain-llama"
REPO = Path(__file__).resolve().parents[2]


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


def stop_request(tmp_path, **fields) -> RunRequest:
    return RunRequest(**{"profile": "tiny", "out": tmp_path / "run", "resume": False, "data_root": REPO, **fields})


@pytest.mark.parametrize(("interrupt", "code", "exit_code", "signal_name"), [
    (Terminated(), "run_terminated", EXIT_TERMINATED, "SIGTERM"), (KeyboardInterrupt(), "run_interrupted", EXIT_INTERRUPTED, "SIGINT")])
def test_stop_error_names_signal_and_resume(tmp_path, interrupt, code, exit_code, signal_name):
    folder = RunFolder(tmp_path / "my run")

    error = run_stopped(interrupt, folder, stop_request(tmp_path), Launch(rank=0, world_size=1, nodes=1))

    assert (error.code, error.exit_code) == (code, exit_code)
    assert error.message.startswith(f"the run in {tmp_path / 'my run'} was stopped by")
    assert signal_name in error.message
    assert f"python -m agent run --profile tiny --resume --out '{tmp_path / 'my run'}'" in error.hint


def test_resume_command_keeps_plan_and_data_root(tmp_path):
    request = stop_request(tmp_path, workloads=["sft-llama", "lora-llama"], device="gpu", data_root=tmp_path / "data root")

    command = resume_command(request, tmp_path / "run")

    assert command == (f"python -m agent run --profile tiny --resume --out {tmp_path / 'run'} --workloads sft-llama,lora-llama "
                       f"--device gpu --data-root '{tmp_path / 'data root'}'")


def test_launched_stop_names_launch_command(tmp_path):
    folder = RunFolder(tmp_path / "run")

    error = run_stopped(KeyboardInterrupt(), folder, stop_request(tmp_path), Launch(rank=1, world_size=2, nodes=1))

    assert "paddle.distributed.launch" in error.hint
    assert f"--resume --out {tmp_path / 'run'}" in error.hint


def test_stop_message_in_chinese(tmp_path):
    set_language("zh")
    try:
        error = run_stopped(Terminated(), RunFolder(tmp_path / "run"), stop_request(tmp_path), Launch(rank=0, world_size=1, nodes=1))
    finally:
        set_language(None)

    assert "SIGTERM" in error.message
    assert "python -m agent run --profile tiny --resume --out" in error.hint
    assert "运行" in error.message
