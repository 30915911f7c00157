"""The run folder: run.json, environment.json and events.jsonl (layout in docs/internals.md)."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from certification.records import append_jsonl, read_json, read_jsonl, write_json
from certification.rulepack import RulePack

from agent import __version__
from agent.errors import AgentError, os_error_reason
from agent.i18n import _
from agent.runner.lock import LOCK_NAME, check_not_busy
from agent.runner.profiles import Profile


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class RunFolder:
    """One run's folder. `create` starts a new run and `resume` reopens an unfinished one."""

    def __init__(self, path: Path, writer: bool = True):
        self.path = path
        # Only global rank 0 writes; other ranks of a `paddle.distributed.launch` run read the folder.
        self.writer = writer

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    def workload_dir(self, workload_id: str) -> Path:
        return self.path / "workloads" / workload_id

    def event(self, name: str, **data: Any) -> None:
        if not self.writer:
            return
        append_jsonl(self.path / "events.jsonl", [{"time": utc_now(), "event": name, **data}])

    def read_run(self) -> dict[str, Any]:
        return read_json(self.run_json)

    def update_run(self, **fields: Any) -> None:
        if not self.writer:
            return
        write_json(self.run_json, {**self.read_run(), **fields})

    def status(self, workload_id: str) -> str | None:
        """Return the status in the workload's result.json, or None before it has one."""
        result = self.workload_dir(workload_id) / "result.json"
        return read_json(result).get("status") if result.is_file() else None

    def completed(self, workload_id: str) -> bool:
        return self.status(workload_id) == "completed"

    def events(self) -> list[dict[str, Any]]:
        path = self.path / "events.jsonl"
        return read_jsonl(path) if path.is_file() else []

    def last_checkpoint(self, workload_id: str) -> tuple[int, Path] | None:
        """Return the step and folder of the workload's latest complete checkpoint, or None.

        A checkpoint is complete when its `checkpoint` event exists, because the
        event is written only after the Trainer has saved every file of it.
        """
        for record in reversed(self.events()):
            if record["event"] == "checkpoint" and record.get("workload") == workload_id:
                folder = self.path / record["path"]
                if folder.is_dir():
                    return int(record["step"]), folder
        return None

    def unclean_end(self) -> dict[str, Any] | None:
        """Return the last event of an attempt that ended without a stop event (a crash or a kill), else None."""
        events = self.events()
        if events and events[-1]["event"] != "stop":
            return events[-1]
        return None

    @classmethod
    def follow(cls, path: Path, timeout: float = 300.0) -> "RunFolder":
        """Open the run that global rank 0 creates in `path`, for a rank that only reads it."""
        deadline = time.monotonic() + timeout
        while not (path / "run.json").is_file():
            if time.monotonic() > deadline:
                raise AgentError("run_folder_missing", _("rank 0 did not create run.json in {path} within {seconds:.0f} s").format(path=path, seconds=timeout),
                                 _("check rank 0's log (workerlog.0) and that --out is on a file system every node shares"))
            time.sleep(0.5)
        return cls(path, writer=False)

    @classmethod
    def create(cls, path: Path, profile: Profile, pack: RulePack, labels: dict[str, str],
               workloads: list[str], overrides: dict[str, Any] | None = None, device: str | None = None) -> "RunFolder":
        """Start a new run in `path`, which must be missing or empty.

        run.json is written once, with the `--set` values and the device, because
        the other ranks of a launched run read their overrides from it as soon as
        it exists.
        """
        # The caller holds the folder's lock when the folder exists, so the lock is not probed again here.
        check_new_run_folder(path, probe_lock=False)
        make_run_folder(path)
        folder = cls(path)
        write_json(folder.run_json, {
            "run_id": f"{profile.name}-{uuid.uuid4().hex[:12]}",
            "profile": profile.name,
            "rule_pack": {"name": pack.name, "sha256": pack.sha256},
            "vendor": labels["vendor"],
            "card": {"model": labels["card_model"], "serial": labels["card_serial"]},
            "tracks": profile.tracks,
            "level": profile.level,
            "workloads": workloads,
            "ticket": None,
            "agent_version": __version__,
            "started_at": utc_now(),
            "finished_at": None,
            "overrides": dict(overrides or {}),
            "device": device,
        })
        return folder

    @classmethod
    def resume(cls, path: Path, profile: Profile, pack: RulePack) -> "RunFolder":
        """Reopen the run in `path`, which must be a run of the same profile and rule pack bytes."""
        folder = cls(path)
        check_run_to_resume(path)
        run = folder.read_run()
        if run["profile"] != profile.name or run["rule_pack"]["sha256"] != pack.sha256:
            raise AgentError(
                "run_mismatch",
                _("the run in {path} used profile {run_profile} and rule pack {run_pack} ({run_sha}), "
                  "not profile {profile} with {pack} ({sha})").format(
                    path=path, run_profile=repr(run["profile"]), run_pack=run["rule_pack"]["name"], run_sha=run["rule_pack"]["sha256"][:12],
                    profile=repr(profile.name), pack=pack.name, sha=pack.sha256[:12]),
                _("resume with the profile and rule pack the run started with, or start a new run"),
            )
        return folder


def environment(device: dict[str, Any], nodes: int = 1) -> dict[str, Any]:
    """Describe the software and machine that ran the workloads; `device` comes from devices.device_record."""
    return {
        "python": sys.version.split()[0],
        "paddle": _version("paddlepaddle"),
        "paddlenlp": _version("paddlenlp"),
        "ppdiffusers": _version("ppdiffusers"),
        # Fine-tuning by epochs draws each epoch's order from numpy.random, which promises the same stream only on
        # the same NumPy version, so the verdict needs this to explain an order that differs from the reference's.
        "numpy": _version("numpy"),
        "device": device,
        "nodes": nodes,
        "cpu": {"model": _cpu_model(), "logical_cores": os.cpu_count(), "machine": platform.machine()},
        "os": platform.platform(),
        "hostname": socket.gethostname(),
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def check_run_to_resume(path: Path) -> None:
    """Reject --resume of a path that is a file or has no run.json.

    Only the folder listing is read, so the check runs before any input is hashed.
    """
    if path.exists() and not path.is_dir():
        raise AgentError("run_folder_not_a_folder", _("output path {path} is a file, not a folder").format(path=path),
                         _("pass --out with the folder of the run to resume"))
    if not (path / "run.json").is_file():
        raise AgentError("run_not_found", _("no run to resume in {path}: run.json is missing").format(path=path),
                         _("drop --resume to start a new run there, or pass the folder of an earlier run"))


def check_new_run_folder(path: Path, probe_lock: bool = True) -> None:
    """Reject an --out that another run locks, that holds files, that is a file or whose nearest existing folder is not writable.

    Nothing is read but the folder's listing, so this runs before any input is hashed.
    `probe_lock=False` skips the lock check, for a process that holds the lock itself.
    """
    if path.exists() and not path.is_dir():
        raise AgentError("run_folder_not_a_folder", _("output path {path} is a file, not a folder").format(path=path),
                         _("choose a folder path for --out"))
    if path.is_dir():
        if probe_lock:
            check_not_busy(path)
        _check_empty(path)
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise AgentError("run_folder_not_writable", _("cannot create output folder {path}: {existing} is not a writable folder").format(
                             path=path, existing=existing), _("choose an --out folder that you can write to"))


def _check_empty(path: Path) -> None:
    # A lock file alone is what a run leaves when its inputs were rejected, so it counts as empty.
    if (path / "run.json").exists():
        raise AgentError("run_folder_not_empty", _("output folder {path} already contains another run").format(path=path),
                         _("pass --resume to continue that run, or choose a new --out folder"))
    if any(child.name != LOCK_NAME for child in path.iterdir()):
        raise AgentError("run_folder_not_empty", _("output folder {path} already contains other files, and no run").format(path=path),
                         _("choose an --out folder that is empty or does not exist yet"))


def make_run_folder(path: Path) -> None:
    """Create the folder of a new run (with its parents), or raise `run_folder_not_writable`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AgentError("run_folder_not_writable", _("cannot create output folder {path}: {error}").format(
                             path=path, error=os_error_reason(error)), _("choose an --out folder that you can write to")) from None
