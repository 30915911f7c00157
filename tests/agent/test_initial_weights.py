"""The initial weights of a model built from config: PaddleNLP's distributions, the same values whatever the layout.

The one-process tests compare the recipe with PaddleNLP's own init per tiny
preset and check the plain model is only built lazily. The launched tests
build each preset as two tensor-parallel ranks and as two pipeline stages and
compare every local parameter with the one-process model's, and measure
Paddle's peak host memory while a tensor-parallel rank is built.
"""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from certification.rulepack import load_rule_pack

from tests.agent.launching import environment, launch_failure, printed_values

REPO = Path(__file__).resolve().parents[2]
PRESETS = ("llama-tiny", "qwen2-tiny", "qwen2-moe-tiny", "gpt-tiny")
SEED = 42


@pytest.fixture(scope="module")
def pack():
    return load_rule_pack("tiny-2026.1")


def preset_and_config(pack, name: str, **changes):
    from agent.workloads.models import model_config

    preset = pack.data["models"][name]
    preset = {**preset, "config": {**preset["config"], **changes}}
    return preset, model_config(preset, {"dropout": 0.0}, "cpu")


def paddlenlp_model(preset, config, paddle_seed: int):
    """Build the plain model with PaddleNLP's own init, as the agent built it before the recipe."""
    import paddle

    from agent.workloads.models import _classes

    config_class, model_class = _classes(preset["architecture"])
    paddle.seed(paddle_seed)
    return model_class(config_class(**config))


@pytest.mark.parametrize("name", PRESETS)
def test_draw_matches_paddlenlp_init(pack, name):
    from agent.workloads import initial_weights
    from agent.workloads.models import _classes, architecture, build_model

    preset, config = preset_and_config(pack, name)
    config_class, model_class = _classes(preset["architecture"])
    parameters = initial_weights.plain_parameters(model_class, config_class(**config),
                                                  architecture(preset["architecture"]).scaled_init_layers)
    theirs = {key: value.numpy() for key, value in paddlenlp_model(preset, config, 7).state_dict().items()}
    ours = {key: value.numpy() for key, value in build_model(preset, config, seed=SEED).state_dict().items()}

    assert list(ours) == list(theirs)
    for key, expected in theirs.items():
        value = ours[key]
        assert value.shape == expected.shape, key
        if expected.min() == expected.max():
            np.testing.assert_array_equal(value, expected, err_msg=key)
            continue
        # Five standard errors: of the mean of n normal values, and of the difference of two sample stds.
        count, std = value.size, float(expected.std())
        assert abs(float(value.mean())) < 5 * std / math.sqrt(count), key
        assert abs(float(value.std()) - std) < 5 * std / math.sqrt(count), key
        np.testing.assert_array_equal(value, initial_weights.draw(SEED, parameters[key]), err_msg=key)


def test_values_depend_on_seed_only(pack):
    from agent.workloads.models import build_model

    preset, config = preset_and_config(pack, "qwen2-tiny")
    weights = []
    for paddle_seed, seed in ((1, SEED), (2, SEED), (1, SEED + 1)):
        import paddle

        paddle.seed(paddle_seed)
        weights.append({key: value.numpy() for key, value in build_model(preset, config, seed=seed).state_dict().items()})

    key = "qwen2.layers.0.self_attn.q_proj.weight"
    # Paddle's generator does not enter the recipe, and the recipe's seed does.
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)
    assert not np.array_equal(weights[0][key], weights[2][key])


def test_value_is_the_named_draw(pack):
    from agent.workloads import initial_weights
    from agent.workloads.models import build_model

    preset, config = preset_and_config(pack, "llama-tiny")
    weights = build_model(preset, config, seed=SEED).state_dict()
    key = "llama.layers.1.mlp.gate_proj.weight"
    parameter = initial_weights.PlainParameter(key, tuple(weights[key].shape), 0.02)

    np.testing.assert_array_equal(weights[key].numpy(), initial_weights.draw(SEED, parameter))


def test_half_precision_build_keeps_dtype(pack):
    # Inference builds a model without released weights in the dtype it serves.
    import paddle
    from paddlenlp.transformers.model_utils import dtype_guard

    from agent.workloads.models import build_model

    preset, config = preset_and_config(pack, "llama-tiny")
    with dtype_guard("bfloat16"):
        half = build_model(preset, config, seed=SEED).state_dict()
    full = build_model(preset, config, seed=SEED).state_dict()

    for key, value in half.items():
        assert value.dtype == paddle.bfloat16, key
        np.testing.assert_array_equal(value.astype("float32").numpy(), full[key].astype("bfloat16").astype("float32").numpy(),
                                      err_msg=key)


@pytest.mark.parametrize(("name", "changes", "tied"), [
    ("llama-tiny", {"tie_word_embeddings": True}, ("llama.embed_tokens.weight", "lm_head.weight")),
    ("gpt-tiny", {}, ("gpt.embeddings.word_embeddings.weight", "lm_head.weight")),
])
def test_tied_parameters_drawn_once(pack, name, changes, tied):
    from agent.workloads import initial_weights
    from agent.workloads.models import _classes, build_model

    preset, config = preset_and_config(pack, name, **changes)
    config_class, model_class = _classes(preset["architecture"])
    parameters = initial_weights.plain_parameters(model_class, config_class(**config), ())
    weights = build_model(preset, config, seed=SEED).state_dict()
    first, second = tied

    assert parameters[second] is parameters[first]
    assert parameters[first].name == first
    np.testing.assert_array_equal(weights[second].numpy(), weights[first].numpy())
    np.testing.assert_array_equal(weights[first].numpy(), initial_weights.draw(SEED, parameters[first]))


def test_plain_parameters_allocate_nothing():
    import paddle.base.core as core
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    from agent.workloads import initial_weights

    # 116M float32 parameters: 465 MB, if the plain model were allocated.
    config = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2752, num_hidden_layers=4,
                         num_attention_heads=8)
    before = core.host_memory_stat_current_value("Allocated", 0)
    core.host_memory_stat_reset_peak_value("Allocated", 0)
    parameters = initial_weights.plain_parameters(LlamaForCausalLM, config, ("o_proj", "down_proj"))
    peak = core.host_memory_stat_peak_value("Allocated", 0)

    whole = sum(4 * math.prod(parameter.shape) for parameter in parameters.values())
    assert whole > 400e6
    # Only buffers, such as the rotary embedding's tables, are allocated: 10 MB here.
    assert peak - before < 0.05 * whole
    assert parameters["llama.layers.3.mlp.down_proj.weight"].shape == (2752, 1024)
    assert parameters["llama.layers.3.mlp.down_proj.weight"].std == pytest.approx(0.02 / math.sqrt(8))
    assert parameters["llama.norm.weight"].std is None


def test_parts_merge_to_one_process_value(pack):
    # The parts of two tensor-parallel ranks, cut from the drawn values, merge with PaddleNLP's merge actions
    # into the one-process model's values.
    from agent.workloads import initial_weights
    from agent.workloads.models import _classes, _split_actions, build_model

    preset, config = preset_and_config(pack, "qwen2-moe-tiny")
    config_class, model_class = _classes(preset["architecture"])
    plain = {key: value.numpy() for key, value in build_model(preset, config, seed=SEED).state_dict().items()}
    parameters = initial_weights.plain_parameters(model_class, config_class(**config), ("o_proj", "down_proj"))
    parts = []
    for rank in (0, 1):
        actions = _split_actions(model_class, config_class(**config, tensor_parallel_degree=2, tensor_parallel_rank=rank),
                                 list(parameters))
        parts.append({key: initial_weights.cut(initial_weights.draw(SEED, parameter), actions[key](plain[key]).shape,
                                               actions[key], key)
                      for key, parameter in parameters.items() if parameter.std is not None and key in actions})
    merge = model_class.get_tensor_parallel_convert_actions(config_class(**config, tensor_parallel_degree=2), list(parts[0]),
                                                            is_split=False, ignore_error=True)

    assert "qwen2_moe.layers.0.mlp.experts.3.down_proj.weight" in parts[0]
    for key in parts[0]:
        assert parts[0][key].shape != plain[key].shape, key
        np.testing.assert_array_equal(merge[key]([part[key] for part in parts]), plain[key], err_msg=key)


def test_cut_rejects_wrong_local_shape():
    from agent.workloads import initial_weights

    whole = np.arange(12, dtype=np.float32).reshape(4, 3)

    assert initial_weights.cut(whole, (4, 3), None, "w") is whole
    np.testing.assert_array_equal(initial_weights.cut(whole, (2, 3), lambda array: array[2:], "w"), whole[2:])
    with pytest.raises(RuntimeError, match=r"initial value of w cut for this tensor-parallel rank has shape \[2, 3\], "
                                           r"but the model's parameter has shape \[4, 2\]"):
        initial_weights.cut(whole, (4, 2), lambda array: array[2:], "w")


def test_non_constant_default_rejected(pack):
    # A parameter outside the recipe that is not a constant would start from layout-dependent values.
    import paddle

    from agent.workloads import initial_weights
    from agent.workloads.models import _classes

    preset, config = preset_and_config(pack, "qwen2-moe-tiny")
    config_class, model_class = _classes(preset["architecture"])
    model = model_class(config_class(**config))
    parameters = initial_weights.plain_parameters(model_class, config_class(**config), ("o_proj", "down_proj"))
    gate = "qwen2_moe.layers.0.mlp.gate.weight"
    model.state_dict()[gate].set_value(paddle.rand(model.state_dict()[gate].shape))

    assert parameters[gate].std is None
    with pytest.raises(RuntimeError, match=f"parameter {gate} is neither drawn by the initial-weights recipe nor a constant"):
        initial_weights.set_initial_weights(model, parameters, SEED, {})


def test_model_record_names_recipe(pack, tmp_path):
    from agent.workloads.common import WorkloadContext
    from agent.workloads.models import model_record

    context = WorkloadContext(workload_id="pretrain-gpt", spec=pack.workload("pretrain-gpt"), pack=pack, data_root=REPO,
                              run_dir=tmp_path, device="cpu")
    record = model_record(context)["initial_weights"]

    assert record["method"] == "philox-normal-by-name-v1"
    assert record["seed"] == context.fixed["seed"]


# Each of two launched processes builds every preset as its tensor-parallel rank (argument "tensor") or pipeline
# stage ("pipeline") and compares each parameter with the one-process model's part of it. It prints a MATCH line per
# preset, and, for tensor parallelism, Paddle's peak host allocation while building a rank of a deeper LLaMA.
LAYOUT_SCRIPT = """
import json, math, sys
sys.path.insert(0, sys.argv[1])
import numpy as np, paddle
import paddle.base.core as core
from paddlenlp.trainer import TrainingArguments
from certification.rulepack import load_rule_pack
from agent.workloads import models
from agent.workloads.training import parallel_model_settings

layout = sys.argv[2]
degrees = {"tensor_parallel_degree": 2} if layout == "tensor" else {"pipeline_parallel_degree": 2}
args = TrainingArguments(output_dir=sys.argv[3], device="cpu", per_device_train_batch_size=2, gradient_accumulation_steps=2,
                         pipeline_parallel_config="disable_batch_p2p_comm", report_to=["none"], **degrees)
parallel = parallel_model_settings(args)
pack = load_rule_pack("tiny-2026.1")
cases = [(name, {}) for name in %(presets)r] + [("llama-tiny", {"tie_word_embeddings": True})]
for name, changes in cases:
    preset = pack.data["models"][name]
    preset = {**preset, "config": {**preset["config"], **changes}}
    config = models.model_config(preset, {}, "cpu")
    split = models.build_model(preset, config, parallel, seed=%(seed)d)
    whole = models.build_model(preset, config, seed=%(seed)d).state_dict()
    if layout == "tensor":
        whole = models._tensor_parallel_part(models.plain_class(preset), split.config, whole)
    # A tied parameter is one tensor in a tensor-parallel rank too, cut as the first of its names.
    local, seen = {}, set()
    for key, value in split.state_dict().items():
        if id(value) not in seen:
            seen.add(id(value))
            local[key] = value
    different = [key for key, value in local.items() if not np.array_equal(value.numpy(), whole[key].numpy())]
    print("MATCH" + name + json.dumps(changes).replace(" ", ""), json.dumps({"parameters": len(local),
          "plain": len(whole), "different": different}), flush=True)

if layout == "tensor":
    # Short rotary tables, so that buffers take little memory next to the parameters.
    preset = {"architecture": "LlamaForCausalLM", "config": {"vocab_size": 1024, "hidden_size": 256, "intermediate_size": 704,
              "num_hidden_layers": 8, "num_attention_heads": 4, "max_position_embeddings": 128, "tie_word_embeddings": False}}
    config = models.model_config(preset, {}, "cpu")
    before = core.host_memory_stat_current_value("Allocated", 0)
    core.host_memory_stat_reset_peak_value("Allocated", 0)
    split = models.build_model(preset, config, parallel, seed=%(seed)d)
    peak = core.host_memory_stat_peak_value("Allocated", 0) - before
    local = sum(4 * math.prod(value.shape) for value in split.state_dict().values())
    plain = models.build_model(preset, config, seed=%(seed)d).state_dict()
    print("MEMORY", json.dumps({"peak": peak, "local": local,
          "whole": sum(4 * math.prod(value.shape) for value in plain.values()),
          "largest": max(4 * math.prod(value.shape) for value in plain.values())}), flush=True)
"""


def launch_layout(tmp_path: Path, layout: str) -> list[dict[str, str]]:
    """Run LAYOUT_SCRIPT on two processes and return each rank's printed values by key."""
    script = tmp_path / "layout.py"
    script.write_text(LAYOUT_SCRIPT % {"presets": PRESETS, "seed": SEED})
    logs = tmp_path / "logs"
    completed = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
                                str(logs), str(script), str(REPO), layout, str(tmp_path / "trainer")],
                               cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, launch_failure(completed, logs)
    keys = tuple(f"MATCH{name}{{}}" for name in PRESETS) + ('MATCHllama-tiny{"tie_word_embeddings":true}', "MEMORY")
    return [printed_values(logs / f"workerlog.{rank}", keys) for rank in (0, 1)]


@pytest.fixture(scope="module")
def tensor_ranks(tmp_path_factory):
    return launch_layout(tmp_path_factory.mktemp("tensor"), "tensor")


@pytest.fixture(scope="module")
def pipeline_stages(tmp_path_factory):
    return launch_layout(tmp_path_factory.mktemp("pipeline"), "pipeline")


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["tensor_ranks", "pipeline_stages"])
def test_layout_parts_match_one_process(request, layout):
    import json

    ranks = request.getfixturevalue(layout)

    for rank, printed in enumerate(ranks):
        matches = {key: json.loads(value) for key, value in printed.items() if key.startswith("MATCH")}
        assert len(matches) == len(PRESETS) + 1, (rank, printed)
        for key, match in matches.items():
            assert match["different"] == [], (rank, key)
            assert match["parameters"] > 0, (rank, key)
            if layout == "pipeline_stages":
                # Each stage holds only its own layers.
                assert match["parameters"] < match["plain"], (rank, key)


@pytest.mark.slow
def test_tensor_parallel_rank_never_holds_whole_model(tensor_ranks):
    import json

    for rank, printed in enumerate(tensor_ranks):
        memory = json.loads(printed["MEMORY"])
        # The rank's own parameters, and PaddleNLP's init and the recipe's drawn part of one parameter at a time.
        bound = memory["local"] + 3 * memory["largest"]
        assert memory["whole"] + memory["local"] > bound, memory
        assert memory["peak"] <= bound, (rank, memory)
