"""Weight decay chooses parameters by their own names, also the `slice@` slices that sharding stage 3 makes."""

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from paddlenlp.trainer import TrainingArguments  # noqa: E402

from agent.workloads.training import RecordingTrainer  # noqa: E402


class Tiny(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.linear = paddle.nn.Linear(3, 2)
        self.norm = paddle.nn.LayerNorm(2)


@pytest.fixture
def trainer(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=0.5, max_grad_norm=0.0)
    return RecordingTrainer(model=Tiny(), args=args, recorder=None)


def test_slices_decay_as_their_parameters(trainer):
    model = trainer.model
    decides = trainer.create_optimizer(0.1)._apply_decay_param_fun

    for parameter, decays in [(model.linear.weight, True), (model.linear.bias, False), (model.norm.weight, False)]:
        assert decides(parameter.name) is decays
        assert decides("slice@" + parameter.name) is decays


def test_slice_update_includes_decay(trainer):
    # AdamW's first step moves each weight by lr * (sign of its gradient) and, with decay, first scales it by 1 - lr * decay.
    weight = trainer.model.linear.weight
    optimizer = trainer.create_optimizer(0.1)
    piece = paddle.create_parameter([2], "float32", name="slice@" + weight.name,
                                    default_initializer=paddle.nn.initializer.Constant(1.0))
    piece.grad = None
    (piece * paddle.to_tensor([1.0, -1.0])).sum().backward()

    optimizer._parameter_list = [piece]
    optimizer.step()

    expected = np.array([1.0, 1.0]) * (1 - 0.1 * 0.5) - 0.1 * np.array([1.0, -1.0])
    assert np.allclose(piece.numpy(), expected, atol=1e-5)


def test_optimizer_wrapped_once(trainer):
    first = trainer.create_optimizer(0.1)._apply_decay_param_fun

    assert trainer.create_optimizer(0.1)._apply_decay_param_fun is first
