"""Peak memory of merging tensor-parallel and pipeline parts into a plain model folder (agent.workloads.rank_merge).

For each model size, a child process builds a LLaMA with random weights.
It cuts the model into `--stages` pipeline stages: the decoder layers
evenly, the embedding on the first stage, and the final norm and the LM
head on the last. It cuts each stage into the parts of `--degree`
tensor-parallel ranks with PaddleNLP's split rules. It writes each part as the processes
do (write_shards). A fresh
child process then imports Paddle and PaddleNLP, records its peak resident
set size, merges the parts with merge_parts, and records the peak again.
The difference is what the merge itself adds. A last child compares every
merged tensor with the model the parts were cut from.

Run: python benchmarks/tensor_parallel_merge.py [--degree 2] [--stages 1] [--shard-mib 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (label, layers): LLaMA with hidden size 512, intermediate size 1376 and a vocabulary of 8000, so that the layers,
# not the embedding and the LM head, make up most of the model, as in large models.
SIZES = [("8 layers", 8), ("32 layers", 32)]

WRITE = """
import sys, json
sys.path.insert(0, {repo!r})
import paddle
from pathlib import Path
from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM
from agent.workloads.models import _tensor_parallel_part
from agent.workloads.rank_merge import part_name, write_shards

settings = dict(hidden_size=512, num_hidden_layers={layers}, intermediate_size=1376, vocab_size=8000,
                num_attention_heads=8, num_key_value_heads=8)
paddle.seed(1)
plain = LlamaForCausalLM(LlamaConfig(**settings))
weights = plain.state_dict()
paddle.save(weights, {reference!r})

def stage_of(name):
    if ".layers." in name:
        return int(name.split(".layers.")[1].split(".")[0]) * {stages} // {layers}
    return 0 if "embed_tokens" in name else {stages} - 1

for stage in range({stages}):
    stage_weights = {{name: tensor for name, tensor in weights.items() if stage_of(name) == stage}}
    for rank in range({degree}):
        config = LlamaConfig(**settings, tensor_parallel_degree={degree}, tensor_parallel_rank=rank)
        part = _tensor_parallel_part(LlamaForCausalLM, config, stage_weights) if {degree} > 1 else stage_weights
        write_shards(((name, tensor.numpy()) for name, tensor in part.items()), Path({parts!r}) / part_name(stage, rank),
                     {shard})
print(json.dumps({{"bytes": sum(int(t.numel()) * 4 for t in weights.values()), "tensors": len(weights)}}))
"""

MERGE = """
import sys, json, resource
sys.path.insert(0, {repo!r})
from pathlib import Path
from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM
from agent.workloads.rank_merge import merge_parts

settings = dict(hidden_size=512, num_hidden_layers={layers}, intermediate_size=1376, vocab_size=8000,
                num_attention_heads=8, num_key_value_heads=8)
config = LlamaConfig(**settings, tensor_parallel_degree={degree})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
merge_parts(LlamaForCausalLM, config, None, Path({parts!r}), Path({merged!r}), {shard}, stages={stages})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"before_kib": before, "after_kib": after}}))
"""

CHECK = """
import sys, json
sys.path.insert(0, {repo!r})
import numpy as np, paddle
from pathlib import Path
from agent.workloads.rank_merge import iter_tensors

reference = paddle.load({reference!r})
merged = dict(iter_tensors(Path({merged!r})))
assert sorted(merged) == sorted(reference), "the merged folder holds other tensors"
print(json.dumps({{"max_difference": max(float(np.abs(merged[n] - t.numpy()).max()) for n, t in reference.items()),
                  "largest_tensor_bytes": max(a.nbytes for a in merged.values())}}))
"""


def run_child(script: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"child process failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(label: str, layers: int, degree: int, stages: int, shard: int, folder: Path) -> dict:
    names = {"repo": str(REPO), "layers": layers, "degree": degree, "stages": stages,
             "shard": shard, "parts": str(folder / "parts"), "merged": str(folder / "merged"),
             "reference": str(folder / "reference.pdparams")}
    model = run_child(WRITE.format(**names))
    memory = run_child(MERGE.format(**names))
    check = run_child(CHECK.format(**names))
    return {"model": label, "tensors": model["tensors"], "model_mib": model["bytes"] / 2**20,
            "largest_tensor_mib": check["largest_tensor_bytes"] / 2**20,
            "rss_after_imports_mib": memory["before_kib"] / 1024, "peak_rss_mib": memory["after_kib"] / 1024,
            "merge_adds_mib": (memory["after_kib"] - memory["before_kib"]) / 1024,
            "max_difference": check["max_difference"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=2, help="tensor-parallel ranks the model is cut into")
    parser.add_argument("--stages", type=int, default=1, help="pipeline stages the model is cut into")
    parser.add_argument("--shard-mib", type=int, default=64, help="shard size of the parts and of the merged folder")
    options = parser.parse_args()
    shard = options.shard_mib * 2**20
    for label, layers in SIZES:
        with tempfile.TemporaryDirectory(prefix="tp-merge-") as folder:
            row = measure(label, layers, options.degree, options.stages, shard, Path(folder))
        print(json.dumps({**row, "degree": options.degree, "stages": options.stages, "shard_mib": options.shard_mib}))


if __name__ == "__main__":
    main()
