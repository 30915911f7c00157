"""Benchmark: judge a full level-III submission of the standard pack with 100,000-step logs.

    python benchmarks/judge_level3.py [--steps 100000] [--repeat 5] [--keep DIR]

It writes a vendor and a reference run folder with every workload that the
three tracks of `standard-2024.1` require up to level III: each training
workload with a step log of `--steps` lines, 5153 LAMBADA items per
pretraining and inference workload and 200 bilingual predictions per
fine-tuning workload. Both are packed and verified with the real bundle code
and a fresh key. It then times `judge()` (every criterion recomputed from the
raw records of both bundles, levels derived) and, apart from that,
`open_bundle()` of the vendor bundle. The target is a judgement under one
second. Metrics that no criterion module registers yet fail as
`metric_unknown` without reading records, so the timing covers only the
criteria that exist; the output lists them. Results go to stdout as text and
one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from certification.bundle import open_bundle, write_bundle  # noqa: E402
from certification.inputs import pack_inputs, pinned_digest  # noqa: E402
from certification.rulepack import load_rule_pack  # noqa: E402
from certification.signing import Keyring, generate_key  # noqa: E402
from certification.verdict import Reference, judge, workload_placements  # noqa: E402

PACK = load_rule_pack("standard-2024.1")
TARGET_SECONDS = 1.0
PREDICTIONS = 200
TRAINING_KINDS = {"pretrain", "sft", "lora", "sd_sft"}
SAMPLES = [
    ("今天天气很好，我们去公园散步。", "今天天气很好，我们去公园散步吧。"),
    ("The cat sat on the mat in 2024.", "The cat sat on the mat in 2024."),
    ("学习机器学习需要数学基础，也需要大量练习。", "学习机器学习需要一定的数学基础。"),
    ("Paris is the capital of France.", "The capital of France is Paris."),
]


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, allow_nan=False), encoding="utf-8")


def write_steps(path: Path, steps: int, scale: float, tokens_per_second: float) -> None:
    """Write one JSON line per step in the agent's steps.jsonl layout; the loss decays smoothly."""
    template = ('{{"step":{0},"loss":{1:.6f},"learning_rate":3e-05,"grad_norm":1.0,"consumed_samples":{2},'
                '"effective_tokens":262144,"padded_tokens":0,"step_seconds":{3:.6f},'
                '"tokens_per_second_per_card":{4},"cards":8}}\n')
    seconds = 262144 / 8 / tokens_per_second
    with open(path, "w", encoding="utf-8") as stream:
        for step in range(1, steps + 1):
            loss = scale * (2.0 + 8.0 * math.exp(-step / 600.0))
            stream.write(template.format(step, loss, 64 * step, seconds, tokens_per_second))


def workload_config(workload_id: str) -> dict:
    spec = PACK.workload(workload_id)
    model = PACK.data["models"][PACK.model_name(workload_id)]
    datasets = {role: [{"name": name, **PACK.data["datasets"][name]} for name in ([names] if isinstance(names, str) else names)]
                for role, names in spec["datasets"].items()}
    return {
        "workload": workload_id, "kind": spec["kind"],
        "hyperparameters": {"fixed": dict(spec["hyperparameters"]["fixed"]), "free": dict(spec["hyperparameters"].get("free", {}))},
        "datasets": datasets,
        "tokenizer": {"name": model["tokenizer"], **PACK.data["tokenizers"][model["tokenizer"]]},
    }


def write_workload(folder: Path, workload_id: str, steps: int, side: str) -> None:
    spec = PACK.workload(workload_id)
    write_json(folder / "config.json", workload_config(workload_id))
    write_json(folder / "result.json", {"workload": workload_id, "kind": spec["kind"], "status": "completed", "summary": {}})
    if spec["kind"] in TRAINING_KINDS:
        write_steps(folder / "steps.jsonl", steps, 1.004 if side == "vendor" else 1.0, 2000.0 if side == "vendor" else 3000.0)
    if spec["kind"] == "pretrain":
        write_json(folder / "validation.json", {"loss": 2.003 if side == "vendor" else 2.0, "tokens": 10_000_000, "batches": 1200})
    if "lambada" in spec["datasets"]:
        correct = 3400 if side == "vendor" else 3420
        lines = [json.dumps({"index": index, "correct": (index * 7919) % 5153 < correct, "target_tokens": 2}) for index in range(5153)]
        (folder / "lambada.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if spec["kind"] in {"sft", "lora"}:
        rows = []
        for index in range(PREDICTIONS):
            prediction, reference = SAMPLES[index % len(SAMPLES)]
            # Every sample is distinct; one in ten vendor outputs differs from the reference's.
            prediction = f"{prediction} {index}" + (" 另外" if side == "vendor" and index % 10 == 0 else "")
            reference = f"{reference} {index}"
            rows.append(json.dumps({"dataset": "sft_dev", "index": index, "prompt": f"prompt {index}", "prediction": prediction, "reference": reference, "prediction_tokens": 20}, ensure_ascii=False))
        (folder / "predictions.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")


def build_run(root: Path, steps: int, side: str) -> Path:
    write_json(root / "run.json", {
        "run_id": f"bench-{side}", "profile": "benchmark", "rule_pack": {"name": PACK.name, "sha256": PACK.sha256},
        "vendor": "Benchmark Vendor" if side == "vendor" else "Reference Lab", "card": {"model": "X100" if side == "vendor" else "A800", "serial": "SN-1"},
        "tracks": ["finetuning", "pretraining", "inference"], "level": 3, "ticket": None, "agent_version": "0.1.0",
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-15T00:00:00+00:00",
        "inputs": input_records(),
    })
    write_json(root / "environment.json", {"python": platform.python_version(), "device": "benchmark", "device_count": 8, "nodes": 1})
    (root / "events.jsonl").write_text('{"time":"2026-01-01T00:00:00Z","event":"start"}\n{"time":"2026-01-15T00:00:00Z","event":"stop"}\n', encoding="utf-8")
    for workload_id in workload_placements(PACK):
        write_workload(root / "workloads" / workload_id, workload_id, steps, side)
    return root


def input_records() -> dict:
    """Return run.json `inputs` for every workload, the same on both sides, so the input comparison passes.

    The benchmark reads no data files, so an input that the draft pack does
    not pin gets the sha256 of its label as its digest.
    """
    labels = {label for workload_id in workload_placements(PACK) for label in pack_inputs(PACK, workload_id)}
    records = {}
    for label in sorted(labels):
        pinned = pinned_digest(PACK, label)
        digest = pinned or hashlib.sha256(label.encode()).hexdigest()
        records[label] = {"path": label, "sha256": digest, "pinned": pinned is not None}
    return records


def human_results() -> dict:
    criteria = [item["id"] for workload_id in workload_placements(PACK) for item in PACK.workload(workload_id)["criteria"] if item["metric"] == "human_gsb"]
    return {criterion_id: {"good": 60, "same": 100, "bad": 50, "signed_off_by": "Benchmark Staff"} for criterion_id in criteria}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="lines per step log (default 100000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed judgements (default 5)")
    parser.add_argument("--keep", type=Path, help="write the bundles here and keep them (default: a temporary folder)")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="judge-level3-"))
    key = generate_key()
    keyring = Keyring([key.public_key])
    try:
        started = time.perf_counter()
        paths = {side: write_bundle(build_run(folder / side, args.steps, side), folder / f"{side}.tar", key).path for side in ("vendor", "reference")}
        prepare_seconds = time.perf_counter() - started

        open_times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            vendor = open_bundle(paths["vendor"], keyring)
            open_times.append(time.perf_counter() - started)
        reference = open_bundle(paths["reference"], keyring)
        human = human_results()

        judge_times, cpu_times = [], []
        for _ in range(args.repeat):
            started, cpu_started = time.perf_counter(), time.process_time()
            verdict = judge(vendor, [Reference(reference, {"bf16": 312.0})], PACK, {"bf16": 200.0}, human)
            judge_times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        report(args, verdict, judge_times, cpu_times, open_times, prepare_seconds, paths)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if min(judge_times) < TARGET_SECONDS else 1


def report(args, verdict, judge_times, cpu_times, open_times, prepare_seconds, paths) -> None:
    evaluated = sorted({result.metric for result in verdict.criteria if result.details.get("code") != "metric_unknown"})
    unknown = sorted({result.metric for result in verdict.criteria if result.details.get("code") == "metric_unknown"})
    result = {
        "benchmark": "judge_level3", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}",
        "python": platform.python_version(), "steps_per_log": args.steps,
        "workloads": len({result.workload for result in verdict.criteria}), "criteria": len(verdict.criteria),
        "bundle_mib": {side: round(path.stat().st_size / 2**20, 1) for side, path in paths.items()},
        "judge_seconds": {"min": min(judge_times), "median": statistics.median(judge_times)},
        "judge_cpu_seconds": {"min": min(cpu_times), "median": statistics.median(cpu_times)},
        "load_average": os.getloadavg(),
        "open_vendor_bundle_seconds": {"min": min(open_times), "median": statistics.median(open_times)},
        "prepare_seconds": prepare_seconds, "target_seconds": TARGET_SECONDS,
        "metrics_evaluated": evaluated, "metrics_not_registered": unknown,
        "levels": {track: outcome["level"] for track, outcome in verdict.tracks.items()},
    }
    print(f"judge(): min {min(judge_times):.3f} s, median {statistics.median(judge_times):.3f} s over {args.repeat} runs (target < {TARGET_SECONDS} s)")
    print(f"judge() CPU time: min {min(cpu_times):.3f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"open_bundle() of the vendor bundle ({result['bundle_mib']['vendor']} MiB): min {min(open_times):.3f} s")
    print(f"{result['workloads']} workloads, {result['criteria']} criteria; metrics without a registered module: {', '.join(unknown) or 'none'}")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
