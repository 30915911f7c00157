"""The recorded gradient norm: read from the optimizer's clip, or computed by the agent when there is none.

Each check compares with the norm that numpy computes in float64 from the
gradients as they are when the optimizer starts, and the clipped updates
with those of Paddle's own ClipGradByGlobalNorm.
"""

import copy
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from certification.records import decode_float, read_jsonl
from certification.rulepack import load_rule_pack

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = "pretrain-llama"


def numpy_norm(parameters) -> float:
    grads = [param.grad.numpy().astype("float64").ravel() for param in parameters if param.grad is not None]
    return float(np.linalg.norm(np.concatenate(grads)))


def tiny_layers(seed: int = 5):
    import paddle

    paddle.seed(seed)
    return paddle.nn.Sequential(paddle.nn.Linear(8, 16), paddle.nn.Tanh(), paddle.nn.Linear(16, 4))


def backward(layers, scale: float = 1.0) -> None:
    import paddle

    data = paddle.to_tensor(np.random.default_rng(0).normal(size=(6, 8)) * scale, dtype="float32")
    (layers(data) ** 2).mean().backward()


def adamw(layers, clip_norm: float | None):
    import paddle

    clip = paddle.nn.ClipGradByGlobalNorm(clip_norm) if clip_norm else None
    return paddle.optimizer.AdamW(learning_rate=0.01, parameters=layers.parameters(), grad_clip=clip)


@pytest.mark.parametrize("clip_norm", [0.05, 100.0])
def test_clip_records_norm_and_clips_as_paddle(clip_norm):
    # The gradients' norm is above 0.05, so they are scaled, and below 100, so they are not.
    from agent.workloads.grad_norm import GradientNormCapture, RecordingGlobalNormClip

    layers, reference = tiny_layers(), tiny_layers()
    optimizer, reference_optimizer = adamw(layers, clip_norm), adamw(reference, clip_norm)
    capture = GradientNormCapture(optimizer)
    backward(layers), backward(reference)
    expected = numpy_norm(layers.parameters())

    capture.before_step(layers, hybrid_parallel=False)
    optimizer.step(), reference_optimizer.step()

    assert capture.source == "ClipGradByGlobalNorm"
    assert isinstance(optimizer._grad_clip, RecordingGlobalNormClip)
    assert capture.take() == pytest.approx(expected, rel=1e-6)
    assert capture.take() is None
    for param, reference_param in zip(layers.parameters(), reference.parameters()):
        np.testing.assert_array_equal(param.numpy(), reference_param.numpy())


def test_no_clip_norm_computed_by_agent():
    from agent.workloads.grad_norm import GradientNormCapture

    layers = tiny_layers()
    optimizer = adamw(layers, None)
    capture = GradientNormCapture(optimizer)
    backward(layers)
    expected = numpy_norm(layers.parameters())

    capture.before_step(layers, hybrid_parallel=False)
    optimizer.step()

    assert capture.source == "agent"
    assert optimizer._grad_clip is None
    assert capture.take() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("clip_norm", [1.0, None])
@pytest.mark.parametrize(("bad", "expected"), [(math.inf, math.inf), (math.nan, math.nan)])
def test_non_finite_norm_kept(clip_norm, bad, expected):
    import paddle

    from agent.workloads.grad_norm import GradientNormCapture

    layers = tiny_layers()
    optimizer = adamw(layers, clip_norm)
    capture = GradientNormCapture(optimizer)
    backward(layers)
    weight = layers[0].weight
    weight.grad.set_value(paddle.full(weight.grad.shape, bad, dtype="float32"))

    capture.before_step(layers, hybrid_parallel=False)
    optimizer.step()
    norm = capture.take()

    assert norm is not None
    assert math.isnan(norm) if math.isnan(expected) else norm == expected


def test_wrapped_optimizer_clip_found():
    from agent.workloads.grad_norm import innermost_optimizer

    class Wrapper:
        def __init__(self, inner):
            self._inner_opt = inner

        def __getattr__(self, name):
            return getattr(self._inner_opt, name)

    optimizer = adamw(tiny_layers(), 1.0)

    assert innermost_optimizer(Wrapper(Wrapper(optimizer))) is optimizer
    assert innermost_optimizer(optimizer) is optimizer


def test_stage3_optimizer_found():
    # Sharding stage 3 wraps the optimizer with _OptimizerWrapper, which sets its `_optim` to the optimizer itself.
    from paddle.distributed.fleet.meta_parallel.sharding.group_sharded_stage3 import _OptimizerWrapper

    from agent.workloads.grad_norm import GradientNormCapture, innermost_optimizer

    optimizer = adamw(tiny_layers(), 1.0)
    wrapped = _OptimizerWrapper(optimizer, False, None, None, None)
    # The search runs in a thread, so that a search that never ends fails the test instead of stopping the session.
    found = []
    search = threading.Thread(target=lambda: found.append(innermost_optimizer(wrapped)), daemon=True)
    search.start()
    search.join(timeout=30)

    assert vars(wrapped)["_optim"] is wrapped
    assert found == [optimizer], "innermost_optimizer did not return within 30 s"
    assert GradientNormCapture(wrapped).source == "ClipGradByGlobalNorm"


# A one-process tiny LLaMA pretraining run through the agent's train(), with a callback that reads the gradients.


def norm_reader_trainer(norms: list[float]):
    from paddlenlp.trainer import TrainerCallback

    from agent.workloads.training import RecordingTrainer

    class NormReader(TrainerCallback):
        def on_optimizer_begin(self, args, state, control, model=None, **kwargs):
            norms.append(numpy_norm(model.parameters()))

    class Trainer(RecordingTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(NormReader())

    return Trainer


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])
def test_tiny_run_records_gradient_norm(tmp_path, max_grad_norm):
    import paddle

    from agent.workloads.common import WorkloadContext, interleave, read_text_documents
    from agent.workloads.models import build_model
    from agent.workloads.pretrain import PackedSequences, collate_packed, pack_documents
    from agent.workloads.training import train, training_arguments

    pack = load_rule_pack("tiny-2026.1")
    spec = copy.deepcopy(pack.workload(WORKLOAD))
    fixed = spec["hyperparameters"]["fixed"]
    fixed.update(max_steps=4, max_grad_norm=max_grad_norm)
    fixed.pop("checkpoint_steps", None)
    context = WorkloadContext(workload_id=WORKLOAD, spec=spec, pack=pack, data_root=REPO, run_dir=tmp_path, device="cpu")
    context.out_dir.mkdir(parents=True)
    documents = interleave([read_text_documents(context.dataset_path(name)) for name in spec["datasets"]["train"]])
    blocks = pack_documents(context.load_tokenizer(), documents, int(fixed["max_seq_length"]) + 1, 4 * int(fixed["global_batch_size"]))
    paddle.seed(int(fixed["seed"]))
    model = build_model(context.model_preset, context.model_config, seed=int(fixed["seed"]))
    norms = []

    trainer, settings = train(context, training_arguments(context), model, PackedSequences(blocks), collate_packed,
                              trainer_class=norm_reader_trainer(norms))
    records = read_jsonl(context.out_dir / "steps.jsonl")

    assert settings["max_grad_norm"] == max_grad_norm
    assert [record["step"] for record in records] == [1, 2, 3, 4]
    assert len(norms) == 4
    # The clip adds float32 squares per parameter; numpy adds float64 squares of all elements.
    assert [decode_float(record["grad_norm"]) for record in records] == pytest.approx(norms, rel=1e-5)
    # The norm came from the Trainer's clip where there is one, and from the agent without a clip.
    assert trainer.recorder.gradient_norm.source == ("ClipGradByGlobalNorm" if max_grad_norm else "agent")
