"""The smoke profile end to end on the real Paddle stack: the run folder, determinism and resume."""

import math
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from agent.cli import main
from certification.records import decode_float, read_json, read_jsonl
from certification.rulepack import load_rule_pack

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = ["pretrain-llama", "sft-llama", "lora-llama"]
STEP_FIELDS = {"step", "loss", "learning_rate", "grad_norm", "consumed_samples", "effective_tokens",
               "padded_tokens", "step_seconds", "tokens_per_second_per_card", "cards"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pack():
    return load_rule_pack("smoke-2026.1")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["run", "--profile", "smoke", "--out", str(out), "--vendor", "Test Vendor"]) == 0
    return out


@pytest.fixture(scope="module")
def second_run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke-again") / "run"
    completed = subprocess.run([sys.executable, "-m", "agent", "run", "--profile", "smoke", "--out", str(out)],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().endswith(str(out))
    return out


def losses(run: Path, workload: str) -> list[float]:
    return [decode_float(record["loss"]) for record in read_jsonl(run / "workloads" / workload / "steps.jsonl")]


def test_run_json(run_dir, pack):
    run = read_json(run_dir / "run.json")

    assert run["profile"] == "smoke"
    assert run["rule_pack"] == {"name": "smoke-2026.1", "sha256": pack.sha256}
    assert run["vendor"] == "Test Vendor"
    assert run["card"]["model"]
    assert run["tracks"] == ["pretraining", "finetuning", "inference"]
    assert run["level"] == 1
    assert run["ticket"] is None
    assert run["finished_at"] >= run["started_at"]


def test_environment_json(run_dir):
    environment = read_json(run_dir / "environment.json")

    assert environment["paddle"].startswith("3.")
    assert environment["paddlenlp"]
    assert environment["numpy"] == numpy.__version__
    assert environment["device"] == {"type": "cpu", "count": 1, "processes": 1, "plugins": {}}
    assert environment["nodes"] == 1


def test_events_in_order(run_dir):
    events = [record["event"] for record in read_jsonl(run_dir / "events.jsonl")]

    assert events == ["start"] + ["workload_start", "workload_end"] * 4 + ["stop"]


def test_run_log(run_dir):
    lines = (run_dir / "agent.log").read_text(encoding="utf-8").splitlines()

    # The run's language follows the environment here, so the lines are checked by logger and run folder.
    assert any(" INFO agent.runner.execute: pretrain-llama" in line for line in lines)
    assert " INFO agent.runner.execute: " in lines[-1]
    assert str(run_dir) in lines[-1]  # the "run finished" line
    assert not any(line.startswith("Traceback") for line in lines)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_steps_records(run_dir, pack, workload):
    records = read_jsonl(run_dir / "workloads" / workload / "steps.jsonl")
    fixed = pack.workload(workload)["hyperparameters"]["fixed"]

    assert [record["step"] for record in records] == list(range(1, fixed["max_steps"] + 1))
    for record in records:
        assert set(record) == STEP_FIELDS
        assert math.isfinite(decode_float(record["loss"]))
        assert 0 < record["effective_tokens"] <= record["padded_tokens"]
        assert record["step_seconds"] > 0
        assert record["learning_rate"] <= fixed["learning_rate"]
    assert records[-1]["consumed_samples"] == fixed["max_steps"] * fixed["global_batch_size"]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_result_and_config(run_dir, workload):
    result = read_json(run_dir / "workloads" / workload / "result.json")
    config = read_json(run_dir / "workloads" / workload / "config.json")

    assert result["status"] == "completed"
    assert result["workload"] == workload
    assert config["tokenizer"]["sha256"]
    assert all(entry["sha256"] for entry in config["datasets"]["train"])
    assert config["determinism"]["seed"] == 42


def test_validation_and_lambada(run_dir, pack):
    folder = run_dir / "workloads" / "pretrain-llama"
    validation = read_json(folder / "validation.json")
    items = read_jsonl(folder / "lambada.jsonl")
    summary = read_json(folder / "result.json")["summary"]
    fixed = pack.workload("pretrain-llama")["hyperparameters"]["fixed"]

    assert validation["tokens"] == fixed["validation_sequences"] * fixed["max_seq_length"]
    assert math.isfinite(validation["loss"])
    assert validation["loss"] == pytest.approx(validation["loss_sum"] / validation["tokens"])
    assert [item["index"] for item in items] == list(range(pack.data["settings"]["lambada"]["items"]))
    assert all(item["target_tokens"] for item in items)
    assert summary["lambada_accuracy"] == sum(item["correct"] for item in items) / len(items)


@pytest.mark.parametrize("workload", ["sft-llama", "lora-llama"])
def test_predictions(run_dir, pack, workload):
    records = read_jsonl(run_dir / "workloads" / workload / "predictions.jsonl")
    spec = pack.workload(workload)
    per_dataset = spec["hyperparameters"]["fixed"]["eval_samples_per_dataset"]

    assert len(records) == per_dataset * len(spec["datasets"]["eval"])
    for record in records:
        assert set(record) == {"dataset", "index", "prompt", "prediction", "reference", "prediction_tokens"}
        assert 0 <= record["prediction_tokens"] <= spec["hyperparameters"]["fixed"]["max_new_tokens"]
        assert "<s>" not in record["prediction"]
        assert "</s>" not in record["prediction"]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_two_runs_same_losses(run_dir, second_run_dir, workload):
    assert losses(run_dir, workload) == losses(second_run_dir, workload)


def test_two_runs_same_outputs(run_dir, second_run_dir):
    for name in ["pretrain-llama/lambada.jsonl", "sft-llama/predictions.jsonl", "lora-llama/predictions.jsonl"]:
        first = (run_dir / "workloads" / name).read_text(encoding="utf-8")
        assert first == (second_run_dir / "workloads" / name).read_text(encoding="utf-8"), name


def test_resume_skips_completed(second_run_dir):
    steps = second_run_dir / "workloads" / "pretrain-llama" / "steps.jsonl"
    before = steps.read_text(encoding="utf-8")

    assert main(["run", "--profile", "smoke", "--out", str(second_run_dir), "--resume"]) == 0

    assert steps.read_text(encoding="utf-8") == before
    events = [record["event"] for record in read_jsonl(second_run_dir / "events.jsonl")]
    assert events[-2:] == ["resume", "stop"]


def test_inference_records(run_dir, pack):
    folder = run_dir / "workloads" / "infer-llama"
    result = read_json(folder / "result.json")
    config = read_json(folder / "config.json")
    generations = read_jsonl(folder / "generations.jsonl")
    requests = read_jsonl(folder / "requests.jsonl")
    search = read_json(folder / "search.json")

    assert result["status"] == "completed"
    assert config["data_type"]["data_type"] == "fp32"
    assert config["server"]["kind"] == "agent"
    assert len(read_jsonl(folder / "lambada.jsonl")) == pack.data["settings"]["lambada"]["items"]
    assert {row["language"] for row in generations} == {"zh", "en"}
    assert all(row["prompt_tokens"] > 1 and row["prediction_tokens"] >= 0 for row in generations)
    assert search["status"] == "completed"
    assert {row["trial"] for row in requests} == {trial["trial"] for trial in search["trials"]}
    if search["result"]["level"] is not None:
        confirmed = [trial for trial in search["trials"] if trial["level"] == search["result"]["level"]]
        assert len(confirmed) >= 3
        assert all(trial["summary"]["passed"] for trial in confirmed)
        assert search["result"]["qps"] > 0


def test_inference_outputs_deterministic(run_dir, second_run_dir):
    for name in ("generations.jsonl", "lambada.jsonl"):
        first = (run_dir / "workloads" / "infer-llama" / name).read_text(encoding="utf-8")
        assert first == (second_run_dir / "workloads" / "infer-llama" / name).read_text(encoding="utf-8"), name
