"""SFT and LoRA of the tiny LLaMA preset split over two CPU processes, against one process.

Under `tensor_parallel_degree=2` both ranks train on the same batches and
decode every dev batch together, with the LM head gathering the whole
logits. Under sharding stage 3 the two ranks form one sharding group, whose
hooks all-gather each layer's parameters, so they too decode every dev
batch together. Each launched run must give the one-process losses within a
relative 1e-5 and the same predictions.jsonl.

A script on two launched ranks checks decoding on its own. A split model
keeps PaddleNLP's default of vocabulary-parallel logits there, as on a card.
It must pick the plain model's greedy tokens once `gathered_logits` is in
effect. LoRA's A matrices on each rank must be the plain model's, cut to the
rank's rows where the layer is row-parallel.
"""

import json
import subprocess
import sys

import pytest

from certification.records import read_json, read_jsonl

from tests.agent.launching import (
    FINETUNE_MAX_STEPS,
    FINETUNE_WORKLOADS,
    REPO,
    environment,
    launch_failure,
    launch_finetune,
    losses,
    run_finetune_one_process,
)

# eval_samples_per_dataset is 4 in the tiny pack, so batches of 3 give 4 dev batches.
DEV_BATCHES = 4
LAYOUTS = {
    "tensor-parallel": ("--set", "tensor_parallel_degree=2"),
    # Sharding ranks read their own micro-batches, so each takes 2 of the global batch of 4.
    "sharding-stage3": ("--set", "sharding_stage=3", "--set", "per_device_train_batch_size=2"),
}

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return run_finetune_one_process(tmp_path_factory.mktemp("finetune-one"))


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Launch each layout once, when the first test that needs it runs, and return its folder."""
    folders = {}

    def folder_of(layout: str):
        if layout not in folders:
            folder = tmp_path_factory.mktemp(f"finetune-{layout}")
            # The machine is shared with other launched runs, so the limit is generous: a run took 30 to 90 s.
            launch_finetune(folder, *LAYOUTS[layout], timeout=1200)
            folders[layout] = folder
        return folders[layout]

    return folder_of


@slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_split_loss_matches_one_process(launched, one_process, layout, workload):
    two, one = losses(launched(layout) / "run", workload), losses(one_process, workload)

    assert sorted(two) == list(range(1, FINETUNE_MAX_STEPS + 1))
    assert two == pytest.approx(one, rel=1e-5)


@slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_split_predictions_equal_one_process(launched, one_process, layout, workload):
    two = read_jsonl(launched(layout) / "run" / "workloads" / workload / "predictions.jsonl")
    one = read_jsonl(one_process / "workloads" / workload / "predictions.jsonl")

    assert len(two) == 8
    assert two == one


@slow
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_tensor_parallel_layout_recorded(launched, one_process, workload):
    folder = launched("tensor-parallel") / "run" / "workloads" / workload
    config = read_json(folder / "config.json")
    records = read_jsonl(folder / "steps.jsonl")
    expected = read_jsonl(one_process / "workloads" / workload / "steps.jsonl")

    assert config["trainer"]["parallel_degrees"] == {"data": 1, "sharding": 1, "tensor": 2, "pipeline": 1}
    assert config["trainer"]["tensor_parallel_degree"] == 2
    assert (config["trainer"]["data_parallel_ranks"], config["trainer"]["gradient_accumulation_steps"]) == (1, 1)
    assert config["generation"]["decoded_on"].startswith("the tensor-parallel ranks")
    # Both ranks read the same pairs, so each step's label tokens are counted once.
    assert [record["effective_tokens"] for record in records] == [record["effective_tokens"] for record in expected]
    assert all(record["cards"] == 2 for record in records)


@slow
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_sharding_layout_recorded(launched, workload):
    config = read_json(launched("sharding-stage3") / "run" / "workloads" / workload / "config.json")

    assert config["trainer"]["parallel_degrees"] == {"data": 1, "sharding": 2, "tensor": 1, "pipeline": 1}
    assert config["trainer"]["sharding"] == "stage3"
    assert config["generation"]["decoded_on"].startswith("the sharding ranks")


@slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_ranks_decode_every_batch_together(launched, layout):
    logs = {path.name: path.read_text(errors="replace") for path in (launched(layout) / "logs").glob("workerlog.*")}

    assert sorted(logs) == ["workerlog.0", "workerlog.1"]
    for workload in FINETUNE_WORKLOADS:
        for log in logs.values():
            assert f"{workload}: decoded {DEV_BATCHES} of {DEV_BATCHES} dev batches on model copy 0 of 1" in log


def test_lora_a_ignores_generator_state():
    # PaddleNLP would draw A from Paddle's global generator, whose state here differs between the two models.
    import numpy as np
    import paddle
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    from agent.workloads.finetune import wrap_lora
    from certification.rulepack import load_rule_pack

    preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]["config"]
    fixed = {"lora_rank": 8, "lora_alpha": 16, "seed": 42}
    adapters = []
    for seed in (1, 2):
        paddle.seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**preset))
        wrap_lora(model, fixed)
        adapters.append({name: layer.lora_A.numpy() for name, layer in model.named_sublayers() if hasattr(layer, "lora_A")})
    other_seed = LlamaForCausalLM(LlamaConfig(**preset))
    wrap_lora(other_seed, {**fixed, "seed": 43})

    assert len(adapters[0]) == 14
    for name, matrix in adapters[0].items():
        np.testing.assert_array_equal(matrix, adapters[1][name], err_msg=name)
        # KaimingUniform's bound for a negative slope of sqrt(5): 1/sqrt(in_features).
        assert np.abs(matrix).max() <= 1 / np.sqrt(matrix.shape[0]), name
        assert matrix.std() > 0.5 / np.sqrt(3 * matrix.shape[0]), name
    assert not np.array_equal(other_seed.llama.layers[0].self_attn.q_proj.lora_A.numpy(),
                              adapters[0]["llama.layers.0.self_attn.q_proj"])


# Two launched ranks load a saved tiny LLaMA split over them, with the vocabulary-parallel logits that PaddleNLP
# keeps by default on a card, and the plain model beside it. Each rank prints its greedy tokens for both, and how
# its LoRA A matrices compare with the plain model's.
DECODING_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from types import SimpleNamespace
import numpy as np, paddle
from paddlenlp.trainer import TrainingArguments
from certification.rulepack import load_rule_pack
from agent.workloads import finetune, models, rank_merge
from agent.workloads.training import parallel_model_settings

args = TrainingArguments(output_dir=sys.argv[3], device="cpu", tensor_parallel_degree=2, per_device_train_batch_size=4,
                         report_to=["none"])
preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]
config = models.model_config(preset, {}, "cpu")
settings = {**parallel_model_settings(args), "tensor_parallel_output": True}
split = models.load_checkpoint(preset, {"path": sys.argv[2]}, config, "float32", settings)
plain = models.load_checkpoint(preset, {"path": sys.argv[2]}, config, "float32")
split.eval()
plain.eval()

tokenizer = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)
generator = np.random.default_rng(0)
prompts = [[1, *generator.integers(3, 32000, size=length).tolist()] for length in (5, 11, 8)]
probe = paddle.to_tensor([prompts[1]], dtype="int64")
with paddle.no_grad():
    print("WIDTH", split(input_ids=probe, return_dict=True).logits.shape[-1], flush=True)
    with rank_merge.gathered_logits(split):
        print("GATHERED_WIDTH", split(input_ids=probe, return_dict=True).logits.shape[-1], flush=True)
        print("SPLIT", json.dumps(finetune.greedy_generate(split, tokenizer, prompts, 12)), flush=True)
print("RESTORED", split.config.tensor_parallel_output, flush=True)
print("PLAIN", json.dumps(finetune.greedy_generate(plain, tokenizer, prompts, 12)), flush=True)

fixed = {"lora_rank": 8, "lora_alpha": 16, "seed": 42}
finetune.wrap_lora(split, fixed, 2, args.tensor_parallel_rank)
finetune.wrap_lora(plain, fixed)
whole = {name: layer.lora_A.numpy() for name, layer in plain.named_sublayers() if hasattr(layer, "lora_A")}
rows, equal = 0, 0
for name, layer in split.named_sublayers():
    if not hasattr(layer, "lora_A"):
        continue
    part = layer.lora_A.numpy()
    if part.shape[0] != whole[name].shape[0]:
        rows += 1
        start = args.tensor_parallel_rank * part.shape[0]
        expected = whole[name][start:start + part.shape[0]]
    else:
        expected = whole[name]
    equal += int(np.array_equal(part, expected))
print("LORA", len(whole), rows, equal, flush=True)
"""


@slow
def test_split_decoding_and_lora_start(tmp_path):
    import paddle
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    from certification.rulepack import load_rule_pack

    preset = load_rule_pack("tiny-2026.1").data["models"]["llama-tiny"]["config"]
    paddle.seed(11)
    LlamaForCausalLM(LlamaConfig(**preset)).save_pretrained(str(tmp_path / "ckpt"))
    (tmp_path / "decode.py").write_text(DECODING_SCRIPT)
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
               str(tmp_path / "logs"), str(tmp_path / "decode.py"), str(REPO), str(tmp_path / "ckpt"), str(tmp_path / "out")]
    completed = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, launch_failure(completed, tmp_path / "logs")

    for rank in (0, 1):
        lines = dict(line.split(" ", 1) for line in (tmp_path / "logs" / f"workerlog.{rank}").read_text().splitlines()
                     if line.split(" ", 1)[0] in ("WIDTH", "GATHERED_WIDTH", "SPLIT", "RESTORED", "PLAIN", "LORA"))
        # Without gathering each rank gets only the logits of its half of the vocabulary.
        assert lines["WIDTH"] == "16000"
        assert lines["GATHERED_WIDTH"] == "32000"
        assert lines["RESTORED"] == "True"
        split, plain = json.loads(lines["SPLIT"]), json.loads(lines["PLAIN"])
        # This random model emits no EOS, so each prompt gets all 12 tokens, some of them from rank 1's half.
        assert [len(tokens) for tokens in plain] == [12, 12, 12]
        assert any(token >= 16000 for tokens in plain for token in tokens)
        assert split == plain
        # 7 adapted projections in each of 2 layers; o_proj and down_proj are row-parallel.
        assert lines["LORA"].split() == ["14", "4", "14"]
