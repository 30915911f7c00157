"""Hand-built run folders in the layout that `python -m agent run` writes.

The numbers are synthetic: a loss curve that decays smoothly, constant
throughput, a fixed pattern of correct LAMBADA items and short bilingual predictions.
Tests change one thing at a time through the keyword arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from certification.records import encode_float
from certification.rulepack import RulePack, load_rule_pack

PACK = load_rule_pack("demo-2026.1")
PREDICTIONS = [
    ("sft_zh_dev", "今天天气很好，我们去公园散步。", "今天天气很好，我们去公园散步吧。"),
    ("sft_zh_dev", "学习机器学习需要数学基础。", "学习机器学习需要一定的数学基础。"),
    ("sft_en_dev", "The cat sat on the mat in 2024.", "The cat sat on the mat in 2024."),
    ("sft_en_dev", "Paris is the capital of France.", "The capital of France is Paris."),
]


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, allow_nan=False, indent=2) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False, allow_nan=False) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def loss_curve(steps: int, scale: float = 1.0, nan_at: int | None = None) -> list[float]:
    losses = [scale * (2.0 + 8.0 * math.exp(-step / 60.0)) for step in range(1, steps + 1)]
    if nan_at is not None:
        losses[nan_at - 1] = math.nan
    return losses


def step_rows(losses: list[float], tokens_per_second: float = 1000.0) -> list[dict]:
    rows = []
    for step, loss in enumerate(losses, start=1):
        rows.append({
            "step": step, "loss": encode_float(loss), "learning_rate": 1e-3, "grad_norm": 1.0,
            "consumed_samples": 8 * step, "effective_tokens": 1024, "padded_tokens": 0,
            "step_seconds": 1024 / tokens_per_second, "tokens_per_second_per_card": tokens_per_second, "cards": 1,
        })
    return rows


def workload_config(pack: RulePack, workload_id: str, fixed_overrides: dict | None = None) -> dict:
    spec = pack.workload(workload_id)
    model = pack.data["models"][spec["model"]]
    tokenizer = pack.data["tokenizers"][model["tokenizer"]]
    datasets = {}
    for role, names in spec["datasets"].items():
        records = [{"name": name, **pack.data["datasets"][name]} for name in ([names] if isinstance(names, str) else names)]
        datasets[role] = records if isinstance(names, list) else records[0]
    model_record = {"name": spec["model"], "architecture": model["architecture"], "config": model["config"]}
    if pack.checkpoint_model(workload_id) is not None:
        model_record["checkpoint"] = {**model["checkpoint"], "pinned": True, "files": []}
    return {
        "workload": workload_id,
        "kind": spec["kind"],
        "model": model_record,
        "hyperparameters": {"fixed": {**spec["hyperparameters"]["fixed"], **(fixed_overrides or {})}, "free": spec["hyperparameters"].get("free", {})},
        "datasets": datasets,
        "tokenizer": {"name": model["tokenizer"], **tokenizer},
    }


def write_pretrain(folder: Path, pack: RulePack, options: dict) -> None:
    steps = options.get("steps", pack.workload(folder.name)["hyperparameters"]["fixed"]["max_steps"])
    losses = loss_curve(steps, options.get("loss_scale", 1.0), options.get("nan_at"))
    write_jsonl(folder / "steps.jsonl", step_rows(losses, options.get("tokens_per_second", 1000.0)))
    write_json(folder / "validation.json", {"loss": options.get("validation_loss", 3.0), "tokens": 8192, "batches": 64})
    correct_count = options.get("lambada_correct", 1000)
    items = [{"index": index, "correct": index < correct_count, "target_tokens": 2} for index in range(options.get("lambada_items", 5153))]
    write_jsonl(folder / "lambada.jsonl", items)


def epochs_record(fixed: dict, train_pairs: int) -> dict:
    """Return config.json `epochs` as the agent writes it for the fixed hyperparameters `fixed` and `train_pairs` pairs."""
    epochs, seed = fixed["num_train_epochs"], fixed["seed"]
    steps_per_epoch = train_pairs // fixed["global_batch_size"]
    digests = []
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([seed, epoch]).permutation(train_pairs)[: steps_per_epoch * fixed["global_batch_size"]]
        digests.append(hashlib.sha256(order.astype("<i8").tobytes()).hexdigest())
    return {
        "num_train_epochs": epochs, "steps_per_epoch": steps_per_epoch, "max_steps": steps_per_epoch * epochs,
        "train_pairs": train_pairs, "pairs_left_out_per_epoch": train_pairs % fixed["global_batch_size"],
        "seed": seed, "order_sha256": digests,
    }


def write_finetune(folder: Path, pack: RulePack, options: dict) -> None:
    """Write the step log and predictions. `finetune_steps` sets the logged steps, by default the pack's or the epochs record's max_steps."""
    fixed = pack.workload(folder.name)["hyperparameters"]["fixed"]
    default_steps = fixed["max_steps"] if "max_steps" in fixed else options["epochs"]["max_steps"]
    steps = options.get("finetune_steps", default_steps)
    write_jsonl(folder / "steps.jsonl", step_rows(loss_curve(steps)))
    predictions = options.get("predictions", PREDICTIONS)
    rows = [
        {"dataset": dataset, "index": index, "prompt": f"prompt {index}", "prediction": prediction, "reference": reference, "prediction_tokens": len(prediction)}
        for index, (dataset, prediction, reference) in enumerate(predictions)
    ]
    write_jsonl(folder / "predictions.jsonl", rows)


def write_inference(folder: Path, pack: RulePack, options: dict) -> None:
    """Write LAMBADA items, greedy outputs and a QPS search: levels 4 and 8 pass, 16 fails, 8 is confirmed twice.

    `request_spacing` scales the gaps between sends (2.0 halves the QPS) and
    `slow_confirmation` gives the last trial a 2 s time to first token.
    """
    correct_count = options.get("lambada_correct", 1000)
    write_jsonl(folder / "lambada.jsonl", [{"index": index, "correct": index < correct_count, "target_tokens": 2} for index in range(options.get("lambada_items", 5153))])
    write_jsonl(folder / "generations.jsonl", [
        {"index": index, "id": f"p{index}", "language": "en", "prompt": f"prompt {index}", "prediction": "text", "prompt_tokens": 3, "prediction_tokens": 1}
        for index in range(4)
    ])
    settings = pack.data["settings"]["inference"]
    plans = [(4.0, "search", 0.2), (8.0, "search", 0.2), (16.0, "search", 2.0), (8.0, "confirm", 0.2), (8.0, "confirm", 2.0 if options.get("slow_confirmation") else 0.2)]
    rows, trials = [], []
    for number, (level, role, ttft) in enumerate(plans):
        trials.append({"trial": number, "level": level, "role": role, "load_model": "poisson", "duration_seconds": settings["min_duration_seconds"],
                       "warmup_seconds": 0.0})
        spacing = options.get("request_spacing", 1.0) / level
        for index in range(int(level * settings["min_duration_seconds"])):
            sent = index * spacing
            rows.append({"trial": number, "index": index, "warmup": False, "scheduled": sent, "sent": sent, "first_token": sent + ttft,
                         "end": sent + ttft + 0.1, "status": "ok", "output_tokens": settings["output_tokens"]})
    write_jsonl(folder / "requests.jsonl", rows)
    write_json(folder / "search.json", {"status": "completed", "trials": trials})


LEVEL_ONE_WORKLOADS = ("pretrain-llama", "sft-llama", "lora-llama", "infer-llama")


def input_records(pack: RulePack, workload_ids: tuple[str, ...]) -> dict[str, dict]:
    """Return run.json `inputs` as the agent writes it for these workloads when every file matches the pack's digest.

    A digest that a draft pack leaves null stays null here. A test that needs
    the digest the agent would compute sets it with build_run's `inputs` option.
    """
    records = {}
    for workload_id in workload_ids:
        spec = pack.workload(workload_id)
        for names in spec["datasets"].values():
            for name in [names] if isinstance(names, str) else names:
                entry = pack.data["datasets"][name]
                records[f"dataset {name}"] = {"path": f"/data/{entry['path']}", "sha256": entry["sha256"], "pinned": entry["sha256"] is not None}
        tokenizer = pack.data["models"][spec["model"]]["tokenizer"]
        entry = pack.data["tokenizers"][tokenizer]
        records[f"tokenizer {tokenizer}"] = {"path": f"/data/{entry['path']}", "sha256": entry["sha256"], "pinned": entry["sha256"] is not None}
        model = pack.checkpoint_model(workload_id)
        if model is not None:
            entry = pack.data["models"][model]["checkpoint"]
            records[f"checkpoint {model}"] = {"path": f"/data/{entry['path']}", "sha256": entry["sha256"], "pinned": entry["sha256"] is not None, "files": []}
    return records


def build_run(root: Path, pack: RulePack = PACK, workloads: tuple[str, ...] = LEVEL_ONE_WORKLOADS, planned: tuple[str, ...] = LEVEL_ONE_WORKLOADS, **options: Any) -> Path:
    """Write a run folder under `root`; `options` apply to every workload unless keyed by workload id.

    `planned` is the run's own plan in run.json: a planned workload that is
    not written is missing, and an unplanned one is simply not run. The
    option `inputs` replaces records of run.json `inputs` by label, and a
    label mapped to None is left out.
    """
    root.mkdir(parents=True, exist_ok=True)
    inputs = {**input_records(pack, planned), **options.get("inputs", {})}
    write_json(root / "run.json", {
        "workloads": list(planned),
        "inputs": {label: record for label, record in inputs.items() if record is not None},
        "run_id": "run-0001", "profile": "cpu-demo", "rule_pack": {"name": pack.name, "sha256": pack.sha256},
        "vendor": "Example Vendor", "card": {"model": options.get("card_model", "X100"), "serial": "SN-1"}, "tracks": ["finetuning", "pretraining"],
        "level": 1, "ticket": None, "agent_version": "0.1.0",
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T01:00:00+00:00",
    })
    write_json(root / "environment.json", {"python": "3.11.7", "paddle": "3.3.1", "device": "cpu", "device_count": 1, "nodes": 1, **options.get("environment", {})})
    write_jsonl(root / "events.jsonl", [{"time": "2026-01-01T00:00:00Z", "event": "start"}, {"time": "2026-01-01T01:00:00Z", "event": "stop"}])
    for workload_id in workloads:
        workload_options = {**options, **options.get(workload_id, {})}
        _write_workload(root / "workloads" / workload_id, pack, workload_id, workload_options)
    return root


def _write_workload(folder: Path, pack: RulePack, workload_id: str, options: dict) -> None:
    """Write one workload; one that trains by epochs gets the `epochs` record of `train_pairs` pairs (default 42) in config.json."""
    kind = pack.workload(workload_id)["kind"]
    config = workload_config(pack, workload_id, options.get("fixed_overrides"))
    fixed = config["hyperparameters"]["fixed"]
    if "num_train_epochs" in fixed and "max_steps" not in fixed:
        options = {**options, "epochs": epochs_record(fixed, options.get("train_pairs", 42))}
        config["epochs"] = options["epochs"]
    write_json(folder / "config.json", {**config, **options.get("config_extra", {})})
    write_json(folder / "result.json", {"workload": workload_id, "kind": kind, "status": options.get("status", "completed"), "summary": {}})
    if kind == "pretrain":
        write_pretrain(folder, pack, options)
    elif kind == "infer":
        write_inference(folder, pack, options)
    else:
        write_finetune(folder, pack, options)
