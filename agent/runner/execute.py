"""Executing a planned run: each workload in order, with events, results and resume."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from certification.records import append_jsonl, read_json, read_jsonl, write_json
from certification.rulepack import RulePack, RulePackError, load_rule_pack, rule_pack_path

from agent.commands.validate_pack import check_rule_pack_file
from agent.errors import EXIT_FAILED, EXIT_OK, AgentError, WorkloadNotSupported, from_coded_error
from agent.i18n import _, ngettext
from agent.runner.devices import check_device, device_record
from agent.runner.folder import RunFolder, check_new_run_folder, check_run_to_resume, environment, make_run_folder, utc_now
from agent.runner.lock import RunLock, lock_follower, lock_leader
from agent.inference import ENDPOINT_VARIABLE
from agent.runner.overrides import check_inference_degrees, check_micro_batch, check_overrides, check_sharding_on_device
from agent.runner.checkpoints import check_checkpoint_degrees, check_checkpoint_folders
from agent.runner.node_inputs import verify_once_per_node
from agent.runner.settings import positive_seconds
from agent.runner.plan import check_data_root, plan_workloads, verify_input_files
from agent.runner.profiles import Profile, load_profile
from agent.runner.run_log import LOG_NAME, log_traceback, run_log
from agent.tracks import track_names

logger = logging.getLogger(__name__)



def _heartbeat_seconds() -> float:
    """Read AGENT_HEARTBEAT_SECONDS (default 60), the least time between two heartbeat events."""
    return positive_seconds("AGENT_HEARTBEAT_SECONDS", 60.0)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops like on Ctrl-C and records why."""


# The stop signals (SIGINT, SIGTERM) that arrived during the current run, in order.
_stop_signals: list[int] = []


def _raise_stop(signum, frame):
    _stop_signals.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def stop_signals_handled() -> Iterator[None]:
    """Raise Terminated on SIGTERM and KeyboardInterrupt on SIGINT inside the block, and note which signal arrived."""
    _stop_signals.clear()
    previous_handlers = {number: signal.signal(number, _raise_stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)


def stop_requested() -> KeyboardInterrupt | None:
    """Return the exception for the stop signal that arrived during the run, or None when none did.

    Paddle turns an exception raised inside a backward PyLayer into its own
    error (`OSError: (External) ...` or `ValueError: ... Get backward function
    failed`), so the exception type alone does not show that a signal stopped
    the run.
    """
    if not _stop_signals:
        return None
    return Terminated() if _stop_signals[-1] == signal.SIGTERM else KeyboardInterrupt()


@dataclass(frozen=True)
class Launch:
    """This process's place in a `paddle.distributed.launch` job (rank 0 of 1 without one)."""

    rank: int
    world_size: int
    nodes: int
    local_rank: int | None = None  # the process's rank on its node; None when the launcher did not say
    local_size: int = 1  # the processes on this node

    @classmethod
    def from_environment(cls) -> "Launch":
        # paddle.distributed.launch sets these for every process it starts. PADDLE_NNODES is the launcher's
        # --nnodes, so two nodes on one host (same IP address) count as two.
        world_size = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
        nodes = int(os.environ.get("PADDLE_NNODES", "1"))
        local_rank = os.environ.get("PADDLE_LOCAL_RANK")
        return cls(rank=int(os.environ.get("PADDLE_TRAINER_ID", "0")), world_size=world_size, nodes=nodes,
                   local_rank=int(local_rank) if local_rank is not None else None,
                   local_size=int(os.environ.get("PADDLE_LOCAL_SIZE", "1")))


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
    device: str | None = None  # overrides the profile's device type
    overrides: dict[str, Any] = field(default_factory=dict)  # free hyperparameters set with --set
    workloads: list[str] | None = None  # run only these workloads of the plan (overrides the profile's list)
    checkpoints: dict[str, Path] = field(default_factory=dict)  # model -> checkpoint folder, from --checkpoint


def load_pack(name: str) -> RulePack:
    try:
        return load_rule_pack(name)
    except RulePackError as error:
        raise from_coded_error(error) from error


def start_run(request: RunRequest) -> tuple[Path, int]:
    """Plan the run, verify the data and run every workload. Return the run folder and the exit code."""
    profile = load_profile(request.profile)
    pack = load_pack(profile.rule_pack)
    # The whole pack is checked as validate-pack checks it, so that no workload starts with a value it cannot use.
    check_rule_pack_file(rule_pack_path(profile.rule_pack), logger.error)
    workloads = plan_workloads(pack, profile.tracks, profile.level, request.workloads or profile.workloads)
    logger.info(_("profile {profile}: rule pack {pack}, tracks {tracks}, level {level}, workloads {workloads}").format(
        profile=profile.name, pack=pack.name, tracks=track_names(profile.tracks), level=profile.level, workloads=", ".join(workloads)))
    launch = Launch.from_environment()
    device = request.device or profile.device
    # The checks that need no Paddle come first, so that bad input is rejected before Paddle's import (seconds).
    check_out_path(request, launch)
    check_overrides(pack, workloads, request.overrides)
    check_micro_batch(pack, workloads, request.overrides, launch.world_size)
    check_inference_degrees(pack, workloads, request.overrides or recorded_overrides(request), os.environ.get(ENDPOINT_VARIABLE))
    check_sharding_on_device(pack, workloads, request.overrides or recorded_overrides(request), device, launch.world_size)
    checkpoint_folders = request.checkpoints or recorded_checkpoint_folders(request)
    check_checkpoint_folders(pack, workloads, checkpoint_folders)
    check_checkpoint_degrees(pack, workloads, request.data_root, checkpoint_folders, request.overrides or recorded_overrides(request))
    check_data_root(pack, workloads, request.data_root)
    check_device(device)
    request = _with_default_out(request, profile, launch)
    run_lock = lock_before_inputs(request, launch)
    try:
        # Local rank 0 of each node hashes the inputs; the other processes of that node wait for its records.
        inputs = verify_once_per_node(launch.local_rank, launch.local_size,
                                      lambda: verify_input_files(pack, workloads, request.data_root, checkpoint_folders))
        logger.info(_("verified the digest of every input file"))
        run_lock = run_lock or lock_after_inputs(request, launch)
        folder = open_folder(request, profile, pack, workloads, launch, device)
        with run_log(folder):
            failed = _run_workloads(folder, pack, workloads, request, device, launch, inputs, checkpoint_folders)
            _log_outcome(folder, workloads, failed)
    finally:
        if run_lock is not None:
            run_lock.release()
    return folder.path, EXIT_FAILED if failed else EXIT_OK


def _log_outcome(folder: RunFolder, workloads: list[str], failed: list[str]) -> None:
    if failed:
        logger.warning(ngettext("run finished in {path}: {failed} of {total} workload failed: {names}",
                                "run finished in {path}: {failed} of {total} workloads failed: {names}", len(workloads)).format(
            path=folder.path, failed=len(failed), total=len(workloads), names=", ".join(failed)))
    else:
        logger.info(ngettext("run finished in {path}: the {total} workload is done", "run finished in {path}: all {total} workloads are done",
                             len(workloads)).format(path=folder.path, total=len(workloads)))


def _run_workloads(folder: RunFolder, pack: RulePack, workloads: list[str], request: RunRequest, device: str,
                   launch: Launch, inputs: dict[str, Any], checkpoint_folders: dict[str, Path]) -> list[str]:
    """Record the inputs, run the workloads with SIGTERM and SIGINT handled, and write the stop event. Return the failed ids."""
    folder.update_run(inputs=inputs, checkpoint_folders={model: str(path) for model, path in checkpoint_folders.items()})
    overrides = folder.read_run().get("overrides", {})
    try:
        with stop_signals_handled():
            checkpoints = {label.removeprefix("checkpoint "): record for label, record in inputs.items() if label.startswith("checkpoint ")}
            failed = execute(folder, pack, workloads, request, RunSettings(device, overrides, launch, checkpoints))
    except KeyboardInterrupt as interrupt:
        folder.event("stop", reason="terminated" if isinstance(interrupt, Terminated) else "interrupted")
        raise
    except Exception as error:
        interrupt = stop_requested()
        if interrupt is None:
            raise
        folder.event("stop", reason="terminated" if isinstance(interrupt, Terminated) else "interrupted")
        raise interrupt from error
    folder.update_run(finished_at=utc_now())
    folder.event("stop", failed=failed)
    return failed


def _with_default_out(request: RunRequest, profile: Profile, launch: Launch) -> RunRequest:
    """Return the request with --out set to runs/<profile>-<time> when a one-process run starts without one.

    A launched run without --out is rejected on every rank before any input
    is hashed. Only rank 0 would pick the time-stamped folder, and the other
    ranks could not find it, so rank 0 would leave a started run behind.
    """
    if request.out is not None or request.resume:
        return request
    if launch.world_size > 1:
        raise AgentError("launch_needs_out", _("a launched run of {processes} processes has no --out folder, which all of "
                                               "its processes must share").format(processes=launch.world_size),
                         _("pass --out with a new folder that every process can reach"))
    return replace(request, out=Path("runs") / f"{profile.name}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_out_path(request: RunRequest, launch: Launch) -> None:
    """Reject an --out that is a file, or --resume of a folder without a run, before Paddle's import (seconds) and the input digests."""
    if launch.rank != 0 or request.out is None:
        return
    if request.resume:
        check_run_to_resume(request.out)
    elif request.out.exists() and not request.out.is_dir():
        check_new_run_folder(request.out)


def lock_before_inputs(request: RunRequest, launch: Launch) -> RunLock | None:
    """Reject a run folder that is busy or not empty, and lock it when it exists, before any input is hashed.

    Global rank 0 locks an existing folder at once, so a second run is rejected
    in seconds rather than after minutes of hashing. A new folder is created,
    and locked, only after the inputs pass, so that a rejected run leaves no folder.
    """
    if launch.rank != 0 or request.out is None:
        return None
    if not request.resume:
        check_new_run_folder(request.out)
    if not request.out.is_dir():
        return None
    return lock_leader(request.out, launched=launch.world_size > 1)


def lock_after_inputs(request: RunRequest, launch: Launch) -> RunLock | None:
    """Lock the run folder for the rest of the run: create and lock it on global rank 0, join rank 0's lock on the other ranks."""
    if request.out is None:
        return None  # open_folder rejects a resumed or launched run without --out
    if launch.rank != 0:
        return lock_follower(request.out, launch.rank)
    if request.resume and not request.out.is_dir():
        return None  # open_folder rejects it with run_not_found
    make_run_folder(request.out)
    return lock_leader(request.out, launched=launch.world_size > 1)


def recorded_checkpoint_folders(request: RunRequest) -> dict[str, Path]:
    """Return the `--checkpoint` folders that the run in --out was started with, so that --resume reuses them."""
    run_json = request.out / "run.json" if request.resume and request.out is not None else None
    if run_json is None or not run_json.is_file():
        return {}
    return {model: Path(path) for model, path in read_json(run_json).get("checkpoint_folders", {}).items()}


def recorded_overrides(request: RunRequest) -> dict[str, Any]:
    """Return the `--set` values that the run in --out was started with, which --resume keeps."""
    run_json = request.out / "run.json" if request.resume and request.out is not None else None
    if run_json is None or not run_json.is_file():
        return {}
    return read_json(run_json).get("overrides", {})


@dataclass(frozen=True)
class RunSettings:
    device: str
    overrides: dict[str, Any]
    launch: Launch
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> verified checkpoint record


def open_folder(request: RunRequest, profile: Profile, pack: RulePack, workloads: list[str], launch: Launch,
                device: str) -> RunFolder:
    """Create the run folder, or reopen it for --resume, and write the start or resume events (rank 0 only)."""
    if request.resume or launch.rank != 0:
        if request.out is None:
            if request.resume:
                code, message = "resume_needs_out", _("--resume needs the run folder to continue")
            else:
                code, message = "launch_needs_out", _("a launched run needs the run folder to continue")
            raise AgentError(code, message, _("pass --out with the run folder"))
    if launch.rank != 0:
        return RunFolder.follow(request.out)
    if request.resume:
        folder = RunFolder.resume(request.out, profile, pack)
        _check_same_overrides(folder, request.overrides)
        unclean = folder.unclean_end()
        if unclean is not None:
            # A killed process writes nothing, so its crash is recorded when the run resumes.
            folder.event("crash", detected="on resume", last_event=unclean)
        folder.event("resume")
        return folder

    labels = {
        "vendor": request.vendor or profile.vendor,
        "card_model": request.card_model or profile.card_model,
        "card_serial": request.card_serial or profile.card_serial,
    }
    folder = RunFolder.create(request.out, profile, pack, labels, workloads, overrides=request.overrides, device=device)
    write_json(folder.path / "environment.json", environment(device_record(device, launch.world_size), launch.nodes))
    if request.ticket is not None:
        folder.update_run(ticket=request.ticket)
    folder.event("start", workloads=workloads)
    return folder


def _check_same_overrides(folder: RunFolder, overrides: dict[str, Any]) -> None:
    recorded = folder.read_run().get("overrides", {})
    if overrides and overrides != recorded:
        raise AgentError("run_mismatch", _("the run in {path} was started with --set values {recorded}, not {given}").format(
                             path=folder.path, recorded=recorded, given=overrides),
                         _("resume without --set (the run keeps its own values), or start a new run"))


def execute(folder: RunFolder, pack: RulePack, workloads: list[str], request: RunRequest,
            settings: RunSettings) -> list[str]:
    """Run the workloads in plan order and return the ids that did not complete."""
    from agent.workloads import RUNNERS
    from agent.workloads.common import WorkloadContext

    failed: list[str] = []
    heartbeat = Heartbeat(folder)
    for workload_id in workloads:
        spec = pack.workload(workload_id)
        if folder.completed(workload_id):
            logger.info(_("{workload}: completed in an earlier attempt, skipped").format(workload=workload_id))
            continue
        parent = spec.get("init_from")
        if parent in failed:
            failed.append(workload_id)
            write_result(folder, workload_id, spec["kind"], "failed", {"error": f"init_from {parent} did not complete"})
            continue

        checkpoint = folder.last_checkpoint(workload_id) if request.resume else None
        context = WorkloadContext(
            workload_id=workload_id, spec=spec, pack=pack, data_root=request.data_root, run_dir=folder.path,
            device=settings.device, cards=settings.launch.world_size, rank=settings.launch.rank,
            init_from=folder.path / "models" / parent if parent else None,
            resume_from=checkpoint[1] if checkpoint else None,
            heartbeat=heartbeat, events=folder.event, overrides=settings.overrides,
            checkpoints=settings.checkpoints,
        )
        if not run_one(folder, context, RUNNERS[spec["kind"]], checkpoint[0] if checkpoint else None):
            failed.append(workload_id)
    return failed


def run_one(folder: RunFolder, context, runner, resumed_from_step: int | None = None) -> bool:
    """Run one workload and record its result and events. Return True on success.

    The workload starts in a clean folder, or, when it resumes from the
    checkpoint of step k, keeps the steps.jsonl records of steps 1..k only.
    """
    workload_id, kind = context.workload_id, context.spec["kind"]
    out_dir = folder.workload_dir(workload_id)
    if folder.writer:
        _prepare_folder(out_dir, resumed_from_step)
    if resumed_from_step is None:
        folder.event("workload_start", workload=workload_id)
    else:
        folder.event("workload_start", workload=workload_id, resumed_from_step=resumed_from_step)
    logger.info(_("{workload}: starting the {kind} workload").format(workload=workload_id, kind=kind))
    started = time.monotonic()
    try:
        summary = runner(context)
    except WorkloadNotSupported as error:
        logger.warning(_("{workload}: not supported on this device: {reason}").format(workload=workload_id, reason=error.localized))
        folder.event("workload_end", workload=workload_id, status="not_supported")
        write_result(folder, workload_id, kind, "not_supported", {"reason": str(error), **error.details})
        return True
    except Exception as error:
        interrupt = stop_requested()
        if interrupt is not None:
            # The workload raised because a stop signal arrived, which the caller records as a stop, not a crash.
            raise interrupt from error
        log_failure(folder, workload_id, error)
        folder.event("crash", workload=workload_id, error=f"{type(error).__name__}: {error}")
        write_result(folder, workload_id, kind, "failed", {"error": f"{type(error).__name__}: {error}"})
        return False

    summary["wall_seconds"] = round(time.monotonic() - started, 3)
    write_result(folder, workload_id, kind, "completed", summary)
    folder.event("workload_end", workload=workload_id, status="completed")
    logger.info(_("{workload}: completed in {seconds:.1f} s: {summary}").format(workload=workload_id, seconds=summary["wall_seconds"], summary=summary))
    return True


def log_failure(folder: RunFolder, workload_id: str, error: Exception) -> None:
    """Log a failed workload in one line that names it, the error and where the traceback is (and an AgentError's hint).

    The traceback goes to the run log, and to the terminal only with --verbose. A rank that writes no run
    folder logs it after the line, into the launcher's log of that rank (workerlog.N).
    """
    # An AgentError already states, in the user's language, what failed and what to do.
    description = f"error[{error.code}]: {error.message}" if isinstance(error, AgentError) else _error_line(error)
    hint = "\n  " + _("hint: {hint}").format(hint=error.hint) if isinstance(error, AgentError) and error.hint else ""
    if not folder.writer:
        message = _("{workload}: the workload failed: {error}; its traceback follows").format(workload=workload_id, error=description) + hint
        logger.error(message, exc_info=error)
        return
    message = _("{workload}: the workload failed: {error}; read its traceback in {log}").format(
        workload=workload_id, error=description, log=folder.path / LOG_NAME) + hint
    logger.error(message)
    log_traceback(logger, _("{workload}: traceback of the failure").format(workload=workload_id), error)


def _error_line(error: Exception) -> str:
    """Return the error's type and the first line of its text, as the last line of its traceback starts."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def write_result(folder: RunFolder, workload_id: str, kind: str, status: str, summary: dict) -> None:
    if not folder.writer:
        return
    folder.workload_dir(workload_id).mkdir(parents=True, exist_ok=True)
    write_json(folder.workload_dir(workload_id) / "result.json",
               {"workload": workload_id, "kind": kind, "status": status, "summary": summary})


def _prepare_folder(path: Path, resumed_from_step: int | None) -> None:
    # A workload that did not complete restarts from scratch or from its checkpoint, so its partial records go.
    steps = read_jsonl(path / "steps.jsonl") if resumed_from_step is not None and (path / "steps.jsonl").is_file() else []
    if path.exists():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()
    path.mkdir(parents=True)
    kept = [record for record in steps if record["step"] <= (resumed_from_step or 0)]
    if kept:
        append_jsonl(path / "steps.jsonl", kept)


class Heartbeat:
    """Write a heartbeat event at most once per AGENT_HEARTBEAT_SECONDS while a workload trains or evaluates.

    Every phase shares the interval, so the first evaluation heartbeat comes
    at least one interval after the last training heartbeat.
    """

    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.interval = _heartbeat_seconds()
        self.last = time.monotonic()

    def __call__(self, workload_id: str, phase: str, **progress: int) -> None:
        """Write the event with the phase (such as "training" or "lambada") and its progress counts, once the interval has passed."""
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.folder.event("heartbeat", workload=workload_id, phase=phase, **progress)
            self.last = now
