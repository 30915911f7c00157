"""Heartbeat events while workloads train and evaluate, from one-process smoke runs of the language models and of Stable Diffusion."""

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from agent.cli import main
from agent.runner.execute import Heartbeat
from agent.runner.folder import RunFolder
from agent.workloads.common import WorkloadContext
from agent.workloads.inference import LOADGEN_POLL_SECONDS, _wait_sending_heartbeats
from certification.criteria_stability import longest_crash_free_days
from certification.records import read_jsonl

# The phases each workload goes through after its training, if it trains.
EVALUATION_PHASES = {
    "pretrain-llama": {"validation", "lambada"},
    "sft-llama": {"decoding"},
    "infer-llama": {"lambada", "decoding", "qps_search"},
}

pytestmark = pytest.mark.slow


def run_events(out: Path, *arguments: str) -> list[dict]:
    """Run the agent in this process with a heartbeat interval of one millisecond and return the run's events."""
    with pytest.MonkeyPatch.context() as patch:
        # Far below the time of one batch on the CPU, so nearly every call writes an event.
        patch.setenv("AGENT_HEARTBEAT_SECONDS", "0.001")
        assert main(["run", "--out", str(out), *arguments]) == 0
    return read_jsonl(out / "events.jsonl")


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    out = tmp_path_factory.mktemp("heartbeat") / "run"
    return run_events(out, "--profile", "smoke", "--workloads", ",".join(EVALUATION_PHASES))


@pytest.fixture(scope="module")
def sd_events(tmp_path_factory):
    return run_events(tmp_path_factory.mktemp("heartbeat-sd") / "run", "--profile", "smoke-sd")


def workload_events(events: list[dict], workload: str) -> list[dict]:
    """Return the events from the workload's workload_start to its workload_end, both included."""
    start = next(index for index, event in enumerate(events)
                 if event["event"] == "workload_start" and event["workload"] == workload)
    end = next(index for index, event in enumerate(events)
               if event["event"] == "workload_end" and event["workload"] == workload)
    return events[start:end + 1]


@pytest.mark.parametrize("workload", list(EVALUATION_PHASES))
def test_evaluation_phases_beat(events, workload):
    beats = [event for event in workload_events(events, workload) if event["event"] == "heartbeat"]
    phases = {beat["phase"] for beat in beats}

    assert EVALUATION_PHASES[workload] <= phases
    assert phases - EVALUATION_PHASES[workload] <= {"training"}
    assert all(beat["workload"] == workload for beat in beats)


@pytest.mark.parametrize("workload", ["pretrain-llama", "sft-llama"])
def test_evaluation_beats_follow_training(events, workload):
    phases = [event["phase"] for event in workload_events(events, workload) if event["event"] == "heartbeat"]
    last_training = max(index for index, phase in enumerate(phases) if phase == "training")

    assert "training" in phases
    assert all(phase != "training" for phase in phases[last_training + 1:])
    assert set(phases[last_training + 1:]) == EVALUATION_PHASES[workload]


@pytest.mark.parametrize("phase", ["validation", "lambada", "decoding"])
def test_batch_beats_count_batches(events, phase):
    beats = [event for event in events if event["event"] == "heartbeat" and event.get("phase") == phase]
    counts = [(beat.get("batch", beat.get("prompt")), beat.get("batches", beat.get("prompts"))) for beat in beats]

    assert beats
    assert all(isinstance(done, int) and isinstance(total, int) for done, total in counts)
    assert all(1 <= done <= total for done, total in counts)


@pytest.mark.parametrize("workload", ["sd-sft-digits", "sd-infer-digits"])
def test_image_generation_beats(sd_events, workload):
    beats = [event for event in workload_events(sd_events, workload) if event["event"] == "heartbeat"]
    generation = [beat for beat in beats if beat.get("phase") == "image_generation"]

    assert generation
    assert all(1 <= beat["prompt"] <= beat["prompts"] for beat in generation)
    assert all(beat.get("phase") in {"training", "image_generation"} for beat in beats)


def test_stability_counts_evaluation_beats(events):
    # The events up to a LAMBADA heartbeat contain no stop or crash, so the crash-free span ends at that heartbeat.
    last = max(index for index, event in enumerate(events) if event.get("phase") == "lambada")
    killed = events[:last + 1]
    seconds = (datetime.fromisoformat(killed[-1]["time"]) - datetime.fromisoformat(killed[0]["time"])).total_seconds()

    assert killed[0]["event"] == "start"
    assert longest_crash_free_days(killed) == seconds / 86400.0


def test_only_rank_zero_beats(tmp_path: Path):
    folder = RunFolder(tmp_path)
    heartbeat = Heartbeat(folder)
    heartbeat.interval = 0.0
    for rank in (1, 0):
        context = WorkloadContext(workload_id="pretrain-llama", spec={}, pack=None, data_root=tmp_path, run_dir=tmp_path,
                                  device="cpu", cards=2, rank=rank, heartbeat=heartbeat)
        context.send_heartbeat("lambada", batch=rank + 1, batches=2)

    beats = read_jsonl(tmp_path / "events.jsonl")
    assert [(beat["phase"], beat["batch"]) for beat in beats] == [("lambada", 1)]


def test_search_wait_keeps_output(tmp_path: Path):
    heartbeat = Heartbeat(RunFolder(tmp_path))
    heartbeat.interval = 0.0
    context = WorkloadContext(workload_id="infer-llama", spec={}, pack=None, data_root=tmp_path, run_dir=tmp_path,
                              device="cpu", heartbeat=heartbeat)
    # The child writes before and after the agent's first poll times out, so both lines must survive the retry.
    script = f"import sys, time; print('before', file=sys.stderr, flush=True); time.sleep({LOADGEN_POLL_SECONDS * 1.5}); print('after', file=sys.stderr)"
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        stderr = _wait_sending_heartbeats(context, process)

    assert stderr.splitlines() == ["before", "after"]
    assert process.returncode == 0
    beats = read_jsonl(tmp_path / "events.jsonl")
    assert beats
    assert {(beat["workload"], beat["phase"]) for beat in beats} == {("infer-llama", "qps_search")}
