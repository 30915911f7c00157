"""Benchmark of the agent's inference server: continuous against static batching, by the QPS search.

    python benchmarks/batching.py [--pack demo-2026.1] [--output-tokens 8 32] [--repeats 1] [--prefill-repeats 10]

First times the continuous scheduler's prefill of the first `--max-batch-size`
prompts of the demo prompt set: one forward pass per prompt against one
left-padded pass for all of them (`RunningBatch.prefill`), as the mean of
`--prefill-repeats` repetitions after one untimed pass of each. Then it
builds the pack's tiny LLaMA from its config (seed 7, FP32, CPU) and serves
it with the agent's own server under each scheduler in turn. Against each,
it runs the pack's QPS search in a child process (`python -m agent
loadgen`, as the inference workload runs it) with the pack's inference
settings and `output_tokens` set per row. Prints per search the QPS the search found,
its load level, the worst TTFT percentile at that level, the number of
trials, the largest batch the server decoded and, for the continuous
scheduler, the most requests it prefilled in one pass. The search writes its
records under `--out`.

The server and the load generator share the machine's CPUs, so the figures
depend on everything else that runs there. The schedulers alternate within
each repeat so that a change in machine load affects both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.inference.decoding import RunningBatch  # noqa: E402
from agent.inference.server import SCHEDULERS, BatchingEngine, CompletionsServer  # noqa: E402
from agent.workloads.common import load_tokenizer  # noqa: E402
from agent.workloads.models import build_model, model_config  # noqa: E402
from certification.rulepack import load_rule_pack  # noqa: E402

PROMPTS = REPO / "data" / "prompts" / "inference_prompts_demo.jsonl"


def build_llama(pack):
    preset = pack.data["models"]["llama-tiny"]
    entry = pack.data["tokenizers"][preset["tokenizer"]]
    tokenizer = load_tokenizer(REPO / entry["path"], entry["kind"], entry.get("class"))
    model = build_model(preset, model_config(preset, {"dropout": 0.0}, "cpu"), seed=7)
    model.eval()
    return model, tokenizer


def time_prefill(model, tokenizer, count: int, repeats: int) -> None:
    """Print the mean milliseconds of prefilling `count` demo prompts one at a time and in one padded pass."""
    rows = [json.loads(line) for line in PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()][:count]
    prompts = [[tokenizer.bos_token_id, *tokenizer.encode(row["prompt"])] for row in rows]
    batch = RunningBatch(model)
    ways = {"one pass per prompt": lambda: [batch.prefill([ids]) for ids in prompts], "one padded pass": lambda: batch.prefill(prompts)}
    lengths = sorted(len(ids) for ids in prompts)
    print(f"prefill of {len(prompts)} prompts of {lengths[0]} to {lengths[-1]} tokens, mean of {repeats}:")
    for name, prefill in ways.items():
        prefill()
        started = time.perf_counter()
        for _ in range(repeats):
            prefill()
        print(f"  {name}: {1e3 * (time.perf_counter() - started) / repeats:.1f} ms", flush=True)


def search(model, tokenizer, scheduler: str, settings: dict, max_batch_size: int, out_dir: Path) -> dict:
    """Serve the model with `scheduler` and return the search's result, with the trial count and the largest batch."""
    engine = BatchingEngine(model, tokenizer, "llama-tiny", max_batch_size=max_batch_size, scheduler=scheduler)
    engine.warm_up()
    out_dir.mkdir(parents=True)
    with CompletionsServer(engine) as server:
        command = [sys.executable, "-m", "agent", "loadgen", "--endpoint", server.url, "--model", "llama-tiny",
                   "--prompts", str(PROMPTS), "--settings", json.dumps(settings), "--out", str(out_dir)]
        completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    path = out_dir / "search.json"
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if record.get("status") != "completed":
        detail = record.get("error") or completed.stderr.strip()[-2000:]
        raise RuntimeError(f"the search with the {scheduler} scheduler failed (exit status {completed.returncode}): {detail}")
    largest_prefill = engine.largest_prefill if scheduler == "continuous" else None
    return {**record["result"], "trials_run": len(record["trials"]), "largest_batch": engine.largest_batch,
            "largest_prefill": largest_prefill}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", default="demo-2026.1", help="rule pack whose tiny LLaMA and inference settings to use")
    parser.add_argument("--output-tokens", type=int, nargs="+", default=[8, 32], help="output tokens per request, one search each")
    parser.add_argument("--max-batch-size", type=int, default=16, help="maximum number of requests decoded together")
    parser.add_argument("--repeats", type=int, default=1, help="searches per scheduler and output length")
    parser.add_argument("--prefill-repeats", type=int, default=10, help="timed repetitions of each way of prefilling")
    parser.add_argument("--out", type=Path, default=None, help="folder for the searches' records (default: a temporary folder)")
    args = parser.parse_args()

    pack = load_rule_pack(args.pack)
    model, tokenizer = build_llama(pack)
    out_root = args.out or Path(tempfile.mkdtemp(prefix="batching-"))
    time_prefill(model, tokenizer, args.max_batch_size, args.prefill_repeats)
    print("| output tokens | scheduler | QPS | level (req/s) | worst TTFT p99 (s) | trials | largest batch | largest prefill |")
    print("|---|---|---|---|---|---|---|---|")
    for tokens in args.output_tokens:
        settings = {**pack.data["settings"]["inference"], "output_tokens": tokens}
        for repeat in range(args.repeats):
            for scheduler in SCHEDULERS:
                result = search(model, tokenizer, scheduler, settings, args.max_batch_size, out_root / f"{tokens}-{scheduler}-{repeat}")
                qps = "none" if result["qps"] is None else f"{result['qps']:.1f}"
                worst = "-" if result["qps"] is None else f"{result['worst_ttft_percentile']:.3f}"
                prefill = "-" if result["largest_prefill"] is None else result["largest_prefill"]
                print(f"| {tokens} | {scheduler} | {qps} | {result['level']} | {worst} | {result['trials_run']} | {result['largest_batch']} "
                      f"| {prefill} |", flush=True)
    print(f"records: {out_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
