"""Measure what the agent's own measuring costs: tiny LLaMA pretraining through the agent vs a bare PaddleNLP Trainer.

Both sides train the same model (rule pack tiny-2026.1, preset llama-tiny,
freshly initialised with the same seed) on the same packed blocks with the
same TrainingArguments, optimizer and learning-rate schedule, without
checkpoints. The agent side is `agent.workloads.training.train`: the
RecordingTrainer with its fixed data order and the StepRecorder callback
(device synchronisation, the gradient norm read from the Trainer's clip,
token counts, one steps.jsonl line per step, heartbeat). The bare side is `paddlenlp.trainer.Trainer` with no
callbacks of ours. Rounds alternate between the two sides, and the ratio is
agent tokens/s divided by bare tokens/s, each from the fastest round of its
side, because other work on a shared machine only ever slows a round down.

Whole runs vary by more than the 2% the target allows on a shared VM, so
both sides also time every step. A callback added last to each Trainer
records the wall time between consecutive step ends, which covers the step
and every callback the side runs. Each run gives its median step, without
its first step. `step_ratio` is the median over the rounds of the bare
run's median step divided by that of the agent run right before it. The
VM this was written on switches between a fast and a slow speed (steps of
about 155 ms and 180 ms) from one minute to the next, so the two runs of a
round are compared with each other, not steps pooled over all rounds.

    python benchmarks/agent_overhead.py [--steps 40] [--rounds 5]

Prints one JSON object; docs/benchmarks.md records the results.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import agent.workloads  # noqa: E402,F401  (filters Paddle's import warnings)
from agent.workloads.common import WorkloadContext, interleave, read_text_documents  # noqa: E402
from agent.workloads.models import build_model  # noqa: E402
from agent.workloads.pretrain import PackedSequences, collate_packed, pack_documents  # noqa: E402
from agent.workloads.training import RecordingTrainer, train, training_arguments, warmup_cosine_schedule  # noqa: E402
from certification.rulepack import load_rule_pack  # noqa: E402
from paddlenlp.trainer import TrainerCallback  # noqa: E402

WORKLOAD = "pretrain-llama"


def make_context(steps: int, run_dir: Path) -> WorkloadContext:
    pack = load_rule_pack("tiny-2026.1")
    spec = copy.deepcopy(pack.workload(WORKLOAD))
    spec["hyperparameters"]["fixed"]["max_steps"] = steps
    spec["hyperparameters"]["fixed"].pop("checkpoint_steps", None)
    context = WorkloadContext(workload_id=WORKLOAD, spec=spec, pack=pack, data_root=REPO, run_dir=run_dir, device="cpu")
    context.out_dir.mkdir(parents=True, exist_ok=True)
    return context


def make_dataset(context: WorkloadContext) -> PackedSequences:
    fixed = context.fixed
    documents = interleave([read_text_documents(context.dataset_path(name)) for name in context.spec["datasets"]["train"]])
    blocks = pack_documents(context.load_tokenizer(), documents, int(fixed["max_seq_length"]) + 1,
                            int(fixed["max_steps"]) * int(fixed["global_batch_size"]))
    return PackedSequences(blocks)


def fresh_model(context: WorkloadContext):
    return build_model(context.model_preset, context.model_config, seed=int(context.fixed["seed"]))


class StepClock(TrainerCallback):
    """A Trainer callback that collects the wall time between consecutive step ends of each run, first step left out."""

    def __init__(self):
        self.runs: list[list[float]] = []
        self._last: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.runs.append([])
        self._last = None

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self._last is not None:
            self.runs[-1].append(now - self._last)
        self._last = now

    def medians(self) -> list[float]:
        """Return the median step of each run."""
        return [statistics.median(intervals) for intervals in self.runs]


class ClockedTrainer(RecordingTrainer):
    """The agent's RecordingTrainer with a StepClock after the agent's own callbacks."""

    def __init__(self, *args, clock: StepClock, callbacks=None, **kwargs):
        super().__init__(*args, callbacks=[*(callbacks or []), clock], **kwargs)


def run_agent(context: WorkloadContext, dataset, clock: StepClock) -> float:
    (context.out_dir / "steps.jsonl").unlink(missing_ok=True)
    model = fresh_model(context)
    args = training_arguments(context)
    started = time.perf_counter()
    train(context, args, model, dataset, collate_packed, partial(ClockedTrainer, clock=clock))
    return time.perf_counter() - started


def run_bare(context: WorkloadContext, dataset, clock: StepClock) -> float:
    from paddlenlp.trainer import Trainer

    model = fresh_model(context)
    args = training_arguments(context)
    # Timed from the Trainer's construction, as on the agent side, where train() builds it.
    started = time.perf_counter()
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate_packed,
                      optimizers=(None, warmup_cosine_schedule(context.fixed)), callbacks=[clock])
    trainer.train()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per training run")
    parser.add_argument("--rounds", type=int, default=5, help="training runs per side, alternating")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="overhead-") as folder:
        context = make_context(options.steps, Path(folder))
        dataset = make_dataset(context)
        tokens = options.steps * int(context.fixed["global_batch_size"]) * int(context.fixed["max_seq_length"])
        run_bare(context, dataset, StepClock())  # warm-up: the first run pays for kernel and allocator set-up
        agent_seconds, bare_seconds = [], []
        agent_clock, bare_clock = StepClock(), StepClock()
        for _ in range(options.rounds):
            agent_seconds.append(run_agent(context, dataset, agent_clock))
            bare_seconds.append(run_bare(context, dataset, bare_clock))

    step_ratios = [bare / agent for agent, bare in zip(agent_clock.medians(), bare_clock.medians())]
    agent_rate = tokens / min(agent_seconds)
    bare_rate = tokens / min(bare_seconds)
    print(json.dumps({
        "benchmark": "agent_overhead",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "logical_cores": __import__("os").cpu_count()},
        "steps": options.steps, "rounds": options.rounds, "tokens_per_run": tokens,
        "agent_seconds": agent_seconds, "bare_seconds": bare_seconds,
        "agent_median_seconds": statistics.median(agent_seconds), "bare_median_seconds": statistics.median(bare_seconds),
        "agent_tokens_per_second": agent_rate, "bare_tokens_per_second": bare_rate,
        "ratio": agent_rate / bare_rate,
        "agent_median_step_seconds": agent_clock.medians(),
        "bare_median_step_seconds": bare_clock.medians(),
        "step_ratios": step_ratios,
        "step_ratio": statistics.median(step_ratios),
    }, indent=2))


if __name__ == "__main__":
    main()
