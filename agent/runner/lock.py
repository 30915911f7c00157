"""The run-folder lock: one run at a time writes a run folder, with all the processes of a launched run.

Every process of a run holds an flock(2) on RUN/run.lock from before it
writes into the folder until its run ends (or it exits), so a second `python -m agent run` on
the same --out, with or without --resume, is rejected with `run_folder_busy`.
The kernel drops the lock when the process ends, even after SIGKILL, so a
crashed run leaves no stale lock behind.

Global rank 0 takes the lock exclusively, which fails while any process of
another run holds it. It then records itself in the file and, in a launched
run, turns its lock into a shared one. The other ranks wait for that record,
which names their own job (the launcher's PADDLE_TRAINER_ENDPOINTS), take a
shared lock and add their own record line. A worker that outlives its killed
launcher therefore keeps the folder locked.

NOTE: since Linux 2.6.12 an NFS client emulates flock with fcntl byte-range
locks on the whole file (flock(2)), which the server shares between nodes.
Other network file systems may not lock across nodes at all, and a
multi-node run with the lock on NFS was never tried.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from agent.errors import AgentError, os_error_reason
from agent.i18n import _
from agent.runner.settings import positive_seconds

LOCK_NAME = "run.lock"
POLL_SECONDS = 0.2
LOCK_WAIT_VARIABLE = "AGENT_LOCK_WAIT_SECONDS"
DEFAULT_LOCK_WAIT_SECONDS = 1800.0

logger = logging.getLogger(__name__)


class RunLock:
    """An flock on RUN/run.lock that this process holds until `release` or its exit."""

    def __init__(self, path: Path, descriptor: int):
        self.path = path
        self.descriptor = descriptor

    def release(self) -> None:
        if self.descriptor >= 0:
            # The flock goes with the last descriptor of this open file, which a forked child may still share.
            os.close(self.descriptor)
            self.descriptor = -1


def job_token() -> str:
    """Return a string that all processes of one launched job share: the launcher's list of rank endpoints.

    The launcher picks free ports for each job, so another launch rarely has
    the same list. If it does, its non-zero ranks may join an older run's lock,
    but its rank 0 is still rejected, and the launcher then stops the job.
    """
    return os.environ.get("PADDLE_TRAINER_ENDPOINTS", "")


def lock_leader(run_dir: Path, launched: bool) -> RunLock:
    """Lock `run_dir` for global rank 0, or raise AgentError `run_folder_busy` when another run holds it.

    `run_dir` must exist. In a launched run (`launched`), the lock becomes
    shared after this process records itself, so that the other ranks can join.
    """
    try:
        descriptor = _open_lock_file(run_dir)
    except OSError as error:
        raise AgentError("run_folder_not_writable", _("cannot create the lock file {path}: {error}").format(
                             path=run_dir / LOCK_NAME, error=os_error_reason(error)),
                         _("choose an --out folder that you can write to")) from None
    if not _try_flock(descriptor, fcntl.LOCK_EX):
        os.close(descriptor)
        raise busy_error(run_dir)

    os.ftruncate(descriptor, 0)
    _append_record(descriptor, rank=0)
    # Linux may convert an flock by dropping it and taking the new one (flock(2)), so another run can slip in
    # between. That run then holds the lock exclusively, so this conversion fails and this run is rejected.
    if launched and not _try_flock(descriptor, fcntl.LOCK_SH):
        os.close(descriptor)
        raise busy_error(run_dir)
    return RunLock(run_dir / LOCK_NAME, descriptor)


def lock_follower(run_dir: Path, rank: int, timeout: float | None = None) -> RunLock:
    """Join the lock that global rank 0 of this launched job took on `run_dir`, waiting up to `timeout` seconds.

    The default wait, AGENT_LOCK_WAIT_SECONDS or 1800 s, covers rank 0's
    node hashing its inputs for longer than this node did: rank 0 creates
    the folder only after that. The wait is logged once a minute.
    """
    if timeout is None:
        timeout = positive_seconds(LOCK_WAIT_VARIABLE, DEFAULT_LOCK_WAIT_SECONDS)
    token = job_token()
    started = time.monotonic()
    deadline = started + timeout
    logged = started
    while True:
        descriptor = _open_existing_lock_file(run_dir)
        if descriptor >= 0:
            if _leader_job(descriptor) == token and _try_flock(descriptor, fcntl.LOCK_SH):
                # Check again under the lock: rank 0 of another run cannot take the lock over while this one holds it.
                if _leader_job(descriptor) == token:
                    _append_record(descriptor, rank=rank)
                    return RunLock(run_dir / LOCK_NAME, descriptor)
            os.close(descriptor)
        now = time.monotonic()
        if now > deadline:
            raise AgentError("run_folder_busy", _("rank 0 of this launched run did not lock the run folder {path} within {seconds:.0f} s").format(
                                 path=run_dir, seconds=timeout),
                             _("check rank 0's log (workerlog.0): another run may hold the folder, or rank 0 may still "
                               "be checking its inputs; {variable} sets how long the other ranks wait").format(
                                 variable=LOCK_WAIT_VARIABLE))
        if now - logged >= 60:
            logger.info(_("rank {rank} waits for rank 0 to lock the run folder {path} ({seconds:.0f} s so far)").format(
                rank=rank, path=run_dir, seconds=now - started))
            logged = now
        time.sleep(POLL_SECONDS)


def check_not_busy(run_dir: Path) -> None:
    """Raise `run_folder_busy` when a process holds the lock of an existing `run_dir`, without taking the lock."""
    path = run_dir / LOCK_NAME
    if not path.is_file():
        return
    # Opened for writing, because NFS grants an exclusive lock only on a file open for writing.
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError as error:
        raise AgentError("run_folder_not_writable", _("cannot open the lock file {path}: {error}").format(
                             path=path, error=os_error_reason(error)),
                         _("choose an --out folder that you can write to")) from None
    try:
        if not _try_flock(descriptor, fcntl.LOCK_EX):
            raise busy_error(run_dir)
    finally:
        os.close(descriptor)


def check_run_finished(run_dir: Path) -> None:
    """Raise `run_folder_busy` when a run still holds the lock of `run_dir`, so that its folder is not packed half-written.

    Unlike `check_not_busy`, a lock file that this user may only read is probed through a read-only
    descriptor, so that a finished run folder of another user can still be packed.
    NOTE: on NFS an exclusive flock needs a descriptor open for writing, so a read-only lock file
    there may be reported busy although no run holds it.
    """
    path = run_dir / LOCK_NAME
    if not path.is_file():
        return
    try:
        descriptor = _open_for_probe(path)
    except OSError as error:
        raise AgentError("run_lock_unreadable", _("cannot open the lock file {path}: {error}").format(
                             path=path, error=os_error_reason(error)),
                         _("make the run folder readable for this user, then pack it again")) from None
    try:
        if not _try_flock(descriptor, fcntl.LOCK_EX):
            raise AgentError(
                "run_folder_busy",
                _("run folder {path} is still being written: {holder} holds its lock").format(
                    path=run_dir, holder=describe_holders(run_dir)),
                _("wait until that run ends, then pack the folder again; a bundle of a running run would miss its last results"),
            )
    finally:
        os.close(descriptor)


def busy_error(run_dir: Path) -> AgentError:
    """Build the `run_folder_busy` error, naming the processes that the lock file records."""
    return AgentError(
        "run_folder_busy",
        _("run folder {path} is in use by another run: {holder} holds its lock").format(path=run_dir, holder=describe_holders(run_dir)),
        _("wait until that run ends, or stop it (for a launched run, stop the launcher and each of its workers); "
          "then run the command again, with --resume to continue that run"),
    )


def describe_holders(run_dir: Path) -> str:
    """Name the processes that the lock file of `run_dir` records, leaving out those of this host that have ended."""
    records = read_records(run_dir)
    host = socket.gethostname()
    # Only processes on this host can be checked, so a record of another host is named as it is.
    alive = [record for record in records if record.get("host") != host or _process_exists(record.get("pid"))]
    holders = alive or records
    if not holders:
        return _("an unknown process")
    return ", ".join(_("process {pid} on {host}").format(pid=record.get("pid"), host=record.get("host")) for record in holders)


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """Return the records of the processes that took the lock of `run_dir` last, one per line, skipping damaged lines.

    Call it only in a process that holds no lock on the file: on NFS, closing
    any descriptor of a file drops all of the process's locks on it.
    """
    try:
        text = (run_dir / LOCK_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return _parse_records(text)


def _parse_records(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _open_for_probe(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    return os.open(path, os.O_RDONLY)


def _leader_job(descriptor: int) -> str | None:
    # Read through the descriptor that takes the lock, because closing another one would drop the lock on NFS.
    text = os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode("utf-8", errors="replace")
    leaders = [record for record in _parse_records(text) if record.get("rank") == 0]
    return leaders[0].get("job") if leaders else None


def _open_lock_file(run_dir: Path) -> int:
    # O_APPEND so that each rank's record line lands whole at the end of the file.
    return os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)


def _open_existing_lock_file(run_dir: Path) -> int:
    # Only rank 0 creates the lock file: a worker whose rank 0 was rejected must leave no file in the folder.
    try:
        return os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_APPEND)
    except (FileNotFoundError, NotADirectoryError):
        return -1


def _try_flock(descriptor: int, operation: int) -> bool:
    try:
        fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _append_record(descriptor: int, rank: int) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "rank": rank, "job": job_token()}
    os.write(descriptor, (json.dumps(record) + "\n").encode("utf-8"))


def _process_exists(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
