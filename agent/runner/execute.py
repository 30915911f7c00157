"""Executing a planned run: each workload in order, with events, results and resume."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from certification.records import write_json
from certification.rulepack import RulePack, RulePackError, load_rule_pack

from agent.errors import EXIT_FAILED, EXIT_OK, AgentError
from agent.runner.folder import RunFolder, utc_now
from agent.runner.plan import plan_workloads, verify_input_files
from agent.runner.profiles import Profile, load_profile

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 60.0


@dataclass
class RunRequest:
    profile: str
    out: Path | None
    resume: bool
    data_root: Path
    vendor: str | None = None
    card_model: str | None = None
    card_serial: str | None = None
    ticket: dict | None = None  # the run ticket's envelope, copied into run.json


def load_pack(name: str) -> RulePack:
    try:
        return load_rule_pack(name)
    except RulePackError as error:
        raise AgentError(error.code, str(error), error.hint) from error


def start_run(request: RunRequest) -> tuple[Path, int]:
    """Plan the run, verify the data and run every workload. Return the run folder and the exit code."""
    profile = load_profile(request.profile)
    pack = load_pack(profile.rule_pack)
    workloads = plan_workloads(pack, profile.tracks, profile.level, profile.workloads)
    logger.info("profile %s: rule pack %s, tracks %s, level %d, workloads %s",
                profile.name, pack.name, ", ".join(profile.tracks), profile.level, ", ".join(workloads))
    verify_input_files(pack, workloads, request.data_root)
    logger.info("verified the sha256 of every input file")

    folder = open_folder(request, profile, pack, workloads)
    try:
        failed = execute(folder, profile, pack, workloads, request.data_root)
    except KeyboardInterrupt:
        folder.event("stop", reason="interrupted")
        raise
    folder.update_run(finished_at=utc_now())
    folder.event("stop", failed=failed)
    return folder.path, EXIT_FAILED if failed else EXIT_OK


def open_folder(request: RunRequest, profile: Profile, pack: RulePack, workloads: list[str]) -> RunFolder:
    if request.resume:
        if request.out is None:
            raise AgentError("resume_needs_out", "--resume needs the run folder to continue",
                             "pass --out with the folder of the earlier run")
        folder = RunFolder.resume(request.out, profile, pack)
        folder.event("resume")
        return folder

    labels = {
        "vendor": request.vendor or profile.vendor,
        "card_model": request.card_model or profile.card_model,
        "card_serial": request.card_serial or profile.card_serial,
    }
    out = request.out or Path("runs") / f"{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = RunFolder.create(out, profile, pack, labels, workloads)
    if request.ticket is not None:
        folder.update_run(ticket=request.ticket)
    folder.event("start", workloads=workloads)
    return folder


def execute(folder: RunFolder, profile: Profile, pack: RulePack, workloads: list[str], data_root: Path) -> list[str]:
    """Run the workloads in plan order and return the ids that did not complete."""
    from agent.workloads import RUNNERS
    from agent.workloads.common import WorkloadContext

    failed: list[str] = []
    heartbeat = Heartbeat(folder)
    for workload_id in workloads:
        spec = pack.workload(workload_id)
        if folder.completed(workload_id):
            logger.info("%s: completed in an earlier attempt, skipped", workload_id)
            continue
        parent = spec.get("init_from")
        if parent in failed:
            failed.append(workload_id)
            write_result(folder, workload_id, spec["kind"], "failed", {"error": f"init_from {parent} did not complete"})
            continue

        context = WorkloadContext(
            workload_id=workload_id, spec=spec, pack=pack, data_root=data_root, run_dir=folder.path,
            device=profile.device, init_from=folder.path / "models" / parent if parent else None,
            heartbeat=heartbeat,
        )
        if not run_one(folder, context, RUNNERS[spec["kind"]]):
            failed.append(workload_id)
    return failed


def run_one(folder: RunFolder, context, runner) -> bool:
    """Run one workload in a clean folder and record its result and events. Return True on success."""
    workload_id, kind = context.workload_id, context.spec["kind"]
    out_dir = folder.workload_dir(workload_id)
    _clear(out_dir)
    out_dir.mkdir(parents=True)
    folder.event("workload_start", workload=workload_id)
    logger.info("%s: starting the %s workload", workload_id, kind)
    started = time.monotonic()
    try:
        summary = runner(context)
    except Exception as error:
        logger.exception("%s: the workload failed", workload_id)
        folder.event("crash", workload=workload_id, error=f"{type(error).__name__}: {error}")
        write_result(folder, workload_id, kind, "failed", {"error": f"{type(error).__name__}: {error}"})
        return False

    summary["wall_seconds"] = round(time.monotonic() - started, 3)
    write_result(folder, workload_id, kind, "completed", summary)
    folder.event("workload_end", workload=workload_id, status="completed")
    logger.info("%s: completed in %.1f s: %s", workload_id, summary["wall_seconds"], summary)
    return True


def write_result(folder: RunFolder, workload_id: str, kind: str, status: str, summary: dict) -> None:
    folder.workload_dir(workload_id).mkdir(parents=True, exist_ok=True)
    write_json(folder.workload_dir(workload_id) / "result.json",
               {"workload": workload_id, "kind": kind, "status": status, "summary": summary})


def _clear(path: Path) -> None:
    # A workload that did not complete restarts from scratch, so its partial records go.
    if path.exists():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()


class Heartbeat:
    """Write a heartbeat event at most once per HEARTBEAT_SECONDS while a workload trains."""

    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.last = time.monotonic()

    def __call__(self, workload_id: str, step: int) -> None:
        now = time.monotonic()
        if now - self.last >= HEARTBEAT_SECONDS:
            self.folder.event("heartbeat", workload=workload_id, step=step)
            self.last = now
