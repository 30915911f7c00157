"""Inference workload: one data type of the pretrained model, with LAMBADA, greedy outputs and the QPS search.

The model is the one that `init_from` names, saved by an earlier workload of
the run. Without `init_from` it is the released checkpoint of the pack's
model, loaded as the training workloads load it
(agent.workloads.models.load_checkpoint), or, for a model without one, built
from the pack's config with the pack's seed. The weights load in the dtype
that the data type computes in.

Records in the workload folder:
- config.json: the data type (or why the device does not support it), the server, the search settings;
- calibration_scales.json (A8W8 only): each linear layer's calibrated input abs max, whose sha256 config.json records;
- lambada.jsonl: one line per passage, as for pretraining;
- generations.jsonl: one line per prompt of the pack's prompt set, for human evaluation;
- requests.jsonl and search.json: every request of every load trial, and the trials.

The QPS search runs in a child process (`python -m agent loadgen`), so its
clock readings do not wait on the Python threads that serve the model here.
With the environment variable AGENT_INFERENCE_ENDPOINT set to a completions
URL, the search measures that server instead of starting the agent's own,
and AGENT_INFERENCE_MODEL sets the model name sent to it (default: the
pack's model key).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import paddle

from certification.records import append_jsonl, read_json, write_json

from agent.errors import WorkloadNotSupported
from agent.i18n import _, choose_language, ngettext
from agent.inference import ENDPOINT_VARIABLE, MODEL_VARIABLE, datatypes
from agent.inference.search import SearchSettings
from agent.inference.server import SCHEDULERS, BatchingEngine, CompletionsServer
from agent.runner.overrides import parallel_degrees_above_one
from agent.workloads import lambada, models
from agent.workloads.common import WorkloadContext, apply_determinism, encode

logger = logging.getLogger(__name__)

# How often the agent wakes while the QPS search process runs, to send the heartbeat (which rate-limits itself).
LOADGEN_POLL_SECONDS = 1.0

BATCHING = {"continuous": "per decode step: requests join and leave the running batch at each step",
            "static": "per batch: requests that arrive together, decoded to the end of the batch"}


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Read the prompt set: one JSON object per line with "id", "language" and "prompt"."""
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row.get("prompt"), str) or not row["prompt"]:
                raise ValueError(f"{path} line {number}: 'prompt' must be a non-empty string")
            prompts.append(row)
    return prompts


def resolve_config(context: WorkloadContext) -> dict[str, Any]:
    datasets = context.spec["datasets"]
    model = models.model_record(context)
    if "checkpoint" in model:
        # The weights load in the dtype that the data type computes in, which run() records once they have loaded.
        model["checkpoint"]["dtype"] = None
    return {
        "workload": context.workload_id,
        "kind": "infer",
        "init_from": context.spec.get("init_from"),
        "model": model,
        "hyperparameters": {"fixed": dict(context.fixed), "free": dict(context.free)},
        "datasets": {role: [context.dataset_record(name) for name in ([names] if isinstance(names, str) else names)]
                     for role, names in datasets.items()},
        "tokenizer": context.tokenizer_record(),
        "device": context.device,
        "cards": context.cards,
        "search": SearchSettings.from_pack(context.pack.data["settings"]["inference"]).__dict__,
        "generation": {"decode_strategy": "greedy_search", "max_new_tokens": int(context.fixed["max_new_tokens"]),
                       "prompt": "BOS + prompt ids", "prediction": "generated ids up to the first EOS, special tokens removed"},
        "lambada_recipe": lambada.RECIPE,
    }


def run(context: WorkloadContext) -> dict[str, Any]:
    fixed = context.fixed
    scheduler = context.free.get("scheduler", "continuous")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"{context.workload_id}: scheduler {scheduler!r} is not known: "
                         f"use {' or '.join(f'--set scheduler={name}' for name in SCHEDULERS)}")
    # The runner rejects these before the run starts (check_inference_degrees); this guards other callers.
    degrees = ", ".join(f"{key} {value}" for key, value in parallel_degrees_above_one(context.free).items())
    if degrees and not os.environ.get(ENDPOINT_VARIABLE):
        raise ValueError(f"{context.workload_id}: {degrees} cannot run on the agent's own server, which has no parallelism: "
                         f"set {ENDPOINT_VARIABLE} to a server that runs it, or set the degree to 1")
    config = resolve_config(context)
    config["determinism"] = apply_determinism(int(fixed["seed"]), context.device)
    tokenizer = context.load_tokenizer()

    # Model: the pack's data type, if this device has kernels for it.
    data_type = context.spec.get("data_type", "fp32")
    try:
        model, config["data_type"] = datatypes.load_model(model_loader(context), data_type, tokenizer, _calibration_texts(context))
    except datatypes.DataTypeNotSupported as error:
        config["data_type"] = {**error.record, "data_type": data_type, "supported": False, "reason": error.reason}
        details = {"data_type": data_type, "not_supported_reason": error.reason}
        if "calibration" in error.record:
            _write_scales(context, error.record["calibration"])
            details["calibration_scales_sha256"] = error.record["calibration"]["scales_sha256"]
        write_json(context.out_dir / "config.json", config)
        raise WorkloadNotSupported(str(error), details, error.localized()) from error
    if "calibration" in config["data_type"]:
        _write_scales(context, config["data_type"]["calibration"])
    if "checkpoint" in config["model"]:
        config["model"]["checkpoint"]["dtype"] = config["data_type"]["loaded_in"]
    write_json(context.out_dir / "config.json", config)
    logger.info(_("{workload}: running in {data_type}").format(workload=context.workload_id, data_type=config["data_type"]["data_type"]))

    # LAMBADA, when the workload names the set (the standard's GPT-3 175B is run for performance only).
    accuracy = {}
    if "lambada" in context.spec["datasets"]:
        items = context.pack.data["settings"]["lambada"].get("items")
        accuracy = lambada.evaluate(model, tokenizer, context.dataset_path(context.spec["datasets"]["lambada"]),
                                    context.out_dir / "lambada.jsonl", items, partial(context.send_heartbeat, "lambada"))

    # Greedy outputs of the prompt set, for human evaluation.
    prompts = read_prompts(context.dataset_path(context.spec["datasets"]["prompts"]))
    write_generations(context, model, tokenizer, prompts)

    # QPS under the TTFT limit.
    search = measure_qps(context, model, tokenizer, prompts, config)
    return {"data_type": config["data_type"]["data_type"], **accuracy, "generations": len(prompts),
            "qps": search["result"]["qps"], "qps_level": search["result"]["level"], "trials": len(search["trials"])}


def model_loader(context: WorkloadContext):
    """Return a function that loads the workload's model in a given dtype: from init_from, the model's checkpoint or the pack's config."""
    if context.init_from is not None:
        return datatypes.saved_model_loader(context.init_from)
    if context.checkpoint_model is None:
        return lambda dtype: _build_in(context, dtype)
    record = context.checkpoint()
    return lambda dtype: models.load_checkpoint(context.model_preset, record, context.model_config, dtype)


def _build_in(context: WorkloadContext, dtype: str):
    """Build a model without released weights (GPT-3-175B) from the pack's config, with initial weights of the pack's seed."""
    from paddlenlp.transformers.model_utils import dtype_guard

    with dtype_guard(dtype):
        return models.build_model(context.model_preset, context.model_config, seed=int(context.fixed["seed"]))


def _calibration_texts(context: WorkloadContext) -> list[str]:
    texts = []
    for name in context.dataset_names("calibration"):
        for line in context.dataset_path(name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                texts.append(row.get("src") or row.get("prompt") or row.get("text") or "")
    limit = context.fixed.get("calibration_samples")
    return texts[:limit] if limit else texts


def _write_scales(context: WorkloadContext, calibration: dict[str, Any]) -> None:
    """Move the calibration scales out of the record into calibration_scales.json, whose sha256 the record keeps."""
    scales = calibration.pop("scales")
    (context.out_dir / "calibration_scales.json").write_bytes(datatypes.scales_json(scales))
    calibration["scales_file"] = "calibration_scales.json"
    calibration["datasets"] = context.spec["datasets"].get("calibration")


def write_generations(context: WorkloadContext, model, tokenizer, prompts: list[dict[str, Any]]) -> None:
    """Decode every prompt greedily, one at a time, and write generations.jsonl."""
    max_new_tokens = int(context.fixed["max_new_tokens"])
    model.eval()
    rows = []
    for index, prompt in enumerate(prompts):
        ids = [tokenizer.bos_token_id, *encode(tokenizer, prompt["prompt"])]
        with paddle.no_grad():
            generated, _ = model.generate(
                input_ids=paddle.to_tensor([ids], dtype="int64"), attention_mask=paddle.ones([1, len(ids)], dtype="int64"),
                max_new_tokens=max_new_tokens, decode_strategy="greedy_search", eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, use_cache=True,
            )
        output = generated.numpy().tolist()[0]
        output = output[: output.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in output else output
        rows.append({"index": index, "id": prompt.get("id", str(index)), "language": prompt.get("language"),
                     "prompt": prompt["prompt"], "prediction": tokenizer.decode(output, skip_special_tokens=True),
                     "prompt_tokens": len(ids), "prediction_tokens": len(output)})
        context.send_heartbeat("decoding", prompt=index + 1, prompts=len(prompts))
    append_jsonl(context.out_dir / "generations.jsonl", rows)
    logger.info(ngettext("{workload}: wrote the greedy output for {count} prompt", "{workload}: wrote greedy outputs for {count} prompts", len(rows)).format(
        workload=context.workload_id, count=len(rows)))


def measure_qps(context: WorkloadContext, model, tokenizer, prompts: list[dict[str, Any]], config: dict) -> dict:
    """Serve the model (or use the external endpoint) and run the QPS search in a child process."""
    external = os.environ.get(ENDPOINT_VARIABLE)
    model_name = context.model_name
    if external:
        model_name = os.environ.get(MODEL_VARIABLE, model_name)
        # The agent cannot observe how the external server lays the model out, so it records the degree as declared.
        config["server"] = {"kind": "external", "endpoint": external, "model": model_name, "tensor_parallel_degree": None,
                            "declared_tensor_parallel_degree": int(context.free.get("tensor_parallel_degree", 1))}
        write_json(context.out_dir / "config.json", config)
        return _run_loadgen(context, external, model_name, prompts)

    free = context.free
    # Packs that name no scheduler (the published demo pack) get continuous batching.
    engine = BatchingEngine(model, tokenizer, model_name, max_batch_size=int(free.get("max_batch_size", 16)),
                            batch_wait_seconds=float(free.get("batch_wait_ms", 5)) / 1e3,
                            scheduler=str(free.get("scheduler", "continuous")))
    engine.warm_up()
    with CompletionsServer(engine) as server:
        config["server"] = {"kind": "agent", "endpoint": server.url, "scheduler": engine.scheduler,
                            "max_batch_size": engine.max_batch_size, "batch_wait_seconds": engine.batch_wait_seconds,
                            "batching": BATCHING[engine.scheduler], "tensor_parallel_degree": 1}
        write_json(context.out_dir / "config.json", config)
        return _run_loadgen(context, server.url, model_name, prompts)


def _run_loadgen(context: WorkloadContext, endpoint: str, model_name: str, prompts: list[dict[str, Any]]) -> dict:
    prompt_file = context.out_dir / "load_prompts.jsonl"
    append_jsonl(prompt_file, ({"prompt": row["prompt"]} for row in prompts))
    # The child logs in this run's language, which may come from --lang rather than the environment it inherits.
    command = [sys.executable, "-m", "agent", "--lang", choose_language(), "loadgen", "--endpoint", endpoint, "--model", model_name,
               "--prompts", str(prompt_file), "--settings", json.dumps(context.pack.data["settings"]["inference"]),
               "--out", str(context.out_dir)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            stderr = _wait_sending_heartbeats(context, process)
        except BaseException:
            # As subprocess.run does, so that a stop signal or an error here leaves no search running.
            process.kill()
            raise
    for line in stderr.splitlines():
        if " agent.inference." in line:
            logger.info(_("loadgen: {line}").format(line=line.split(": ", 1)[-1]))
    # Exit status 1 with a completed search means no load level met the TTFT
    # limit: a measurement for the verdict to fail, not a failed workload.
    search_path = context.out_dir / "search.json"
    search = read_json(search_path) if search_path.is_file() else {}
    if search.get("status") != "completed":
        detail = (stderr.strip().splitlines() or ["(no output)"])[-2:]
        raise RuntimeError(f"the QPS search against {endpoint} failed (exit status {process.returncode}): {' '.join(detail)}")
    return search


def _wait_sending_heartbeats(context: WorkloadContext, process: subprocess.Popen) -> str:
    """Wait for the QPS search process to exit, sending the run's heartbeat meanwhile, and return its standard error."""
    while True:
        try:
            # Python's subprocess documentation: retrying communicate() after TimeoutExpired loses no output.
            _, stderr = process.communicate(timeout=LOADGEN_POLL_SECONDS)
            return stderr
        except subprocess.TimeoutExpired:
            context.send_heartbeat("qps_search")
