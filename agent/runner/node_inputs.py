"""Input checks once per node of a launched run: local rank 0 hashes the inputs, the other local ranks read its result.

Hashing a 140 GB checkpoint takes minutes, and every process of a node reads
the same files, so under `paddle.distributed.launch` only the process with
PADDLE_LOCAL_RANK=0 computes the digests. It writes its records, or its
error, to a result file in the node's temporary folder (one folder per user,
mode 700). The file name contains the host name, that process's id and its
start time, so a file left by an earlier launch is never read. Each other
local rank finds local rank 0 among the processes of its own launcher (the
same parent process, with PADDLE_LOCAL_RANK=0 in its environment), waits for
that file while the process lives, and then returns the same records or
raises the same error.

Finding local rank 0 reads /proc, which Linux provides. Where that fails,
for example when a wrapper script runs between the launcher and the agent,
the process checks the inputs itself and logs a warning.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from agent.errors import AgentError
from agent.i18n import _

logger = logging.getLogger(__name__)

# One folder per user, readable by that user only, so that another account on the node cannot plant a result.
RESULT_FOLDER = Path(tempfile.gettempdir()) / f"paddle-cert-agent-{os.getuid()}"
POLL_SECONDS = 0.2
# The launcher starts the processes of a node in one loop, local rank 0 first, so a sibling normally finds it at once.
# This bound covers a slow start; after it the rank checks the inputs itself.
FIND_SECONDS = 30.0
# A result file counts as a sibling's only if its process started this close to this one (see ended_sibling_result).
SIBLING_START_SECONDS = 5
# The result files this process wrote, deleted when it ends.
OWN_RESULTS: list[Path] = []


def verify_once_per_node(local_rank: int | None, local_size: int, verify: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Return the input records of `verify()`, computed once per node when the launcher sets which process is local rank 0.

    `local_rank` is None when no launcher set PADDLE_LOCAL_RANK, and then, as
    with one process per node, this process runs `verify` itself.
    """
    if local_rank is None or local_size <= 1:
        return verify()
    if local_rank == 0:
        return _verify_and_share(verify)
    return _wait_for_local_rank_zero(verify)


def result_path(pid: int) -> Path | None:
    """Return the result file of process `pid` on this host, or None when its start time cannot be read."""
    started = process_start_ticks(pid)
    if started is None:
        return None
    return RESULT_FOLDER / f"inputs-{socket.gethostname()}-{pid}-{started}.json"


def check_result_folder() -> None:
    """Create RESULT_FOLDER with mode 700, and reject one that another user owns or others may write to."""
    RESULT_FOLDER.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = RESULT_FOLDER.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        raise AgentError("input_check_failed", _("the folder {path} for the input check results is owned by another user or writable by others").format(path=RESULT_FOLDER),
                         _("remove it, or set TMPDIR to a folder of your own"))


def remove_stale_results() -> None:
    """Delete the result files of this host whose process no longer runs, such as the error results of failed starts."""
    for path in RESULT_FOLDER.glob(f"inputs-{socket.gethostname()}-*.json"):
        owner = _result_owner(path)
        if owner is not None and not process_running(*owner):
            path.unlink(missing_ok=True)


def _result_owner(path: Path) -> tuple[int, int] | None:
    """Return the process id and start ticks that a result file's name gives, or None for a name of another form."""
    pid, _separator, started = path.stem.removeprefix(f"inputs-{socket.gethostname()}-").partition("-")
    return (int(pid), int(started)) if pid.isdigit() and started.isdigit() else None


def _verify_and_share(verify: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    check_result_folder()
    remove_stale_results()
    path = result_path(os.getpid())
    # The launcher that started this process, so that a sibling that looks only after this process has ended
    # can still tell its result from those of other jobs.
    launcher = [os.getppid(), process_start_ticks(os.getppid())]
    try:
        records = verify()
    except AgentError as error:
        _write_result(path, {"launcher": launcher,
                             "error": {"code": error.code, "message": error.message, "hint": error.hint, "exit_code": error.exit_code}})
        raise
    except Exception as error:
        _write_result(path, {"launcher": launcher,
                             "error": {"code": "input_check_failed", "message": f"{type(error).__name__}: {error}",
                                       "hint": _("see the log of local rank 0 on this node"), "exit_code": 1}})
        raise
    _write_result(path, {"launcher": launcher, "records": records})
    if path is not None:
        # The other local ranks read the file before they start training with this process, so it can go at exit.
        remove_at_exit(path)
    return records


def remove_at_exit(path: Path) -> None:
    """Delete the result file `path` of this process when the process ends."""
    if not OWN_RESULTS:
        atexit.register(remove_own_results)
    OWN_RESULTS.append(path)


def remove_own_results() -> None:
    """Delete the result files this process wrote. atexit calls it, and so does agent.cli.exit_process, which skips atexit."""
    while OWN_RESULTS:
        OWN_RESULTS.pop().unlink(missing_ok=True)


def _write_result(path: Path | None, result: dict[str, Any]) -> None:
    if path is None:
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(result), encoding="utf-8")
    # os.replace is atomic, so a waiting rank never reads a half-written file.
    os.replace(partial, path)


def _wait_for_local_rank_zero(verify: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    check_result_folder()
    leader, ended_result = find_local_rank_zero()
    if ended_result is not None:
        # Local rank 0 checked the inputs and ended (after a failed check) before this process looked for it.
        leader = _result_owner(ended_result)[0]
        logger.info(_("local rank 0 of this node (process {pid}) checked the inputs and ended; reading its result").format(pid=leader))
        return _read_result(ended_result, leader)
    path = result_path(leader) if leader is not None else None
    if path is None:
        logger.warning(_("local rank 0 of this node was not found among the launcher's processes, so this process checks the inputs itself"))
        return verify()

    logger.info(_("waiting for local rank 0 of this node (process {pid}) to check the inputs").format(pid=leader))
    started = process_start_ticks(leader)
    while not path.is_file():
        if not process_running(leader, started):
            # The process ended, or its id now belongs to another process; it may have written the file just before.
            if path.is_file():
                break
            raise AgentError("input_check_failed", _("local rank 0 of this node (process {pid}) ended before it recorded the result of the input checks").format(pid=leader),
                             _("see the log of local rank 0 on this node for its error"))
        time.sleep(POLL_SECONDS)
    return _read_result(path, leader)


def _read_result(path: Path, leader: int) -> dict[str, Any]:
    result = json.loads(path.read_text(encoding="utf-8"))
    if "error" in result:
        error = result["error"]
        raise AgentError(error["code"], error["message"], error["hint"], error["exit_code"])
    logger.info(_("local rank 0 of this node (process {pid}) checked the digest of every input file").format(pid=leader))
    return result["records"]


def find_local_rank_zero(timeout: float = FIND_SECONDS) -> tuple[int | None, Path | None]:
    """Find the process that the same launcher started with PADDLE_LOCAL_RANK=0.

    Return (its id, None) while it runs, (None, its result file) when it has
    already ended after writing a result, and (None, None) when neither is
    found within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    parent = os.getppid()
    while True:
        for pid in child_processes(parent):
            if pid != os.getpid() and process_environment(pid).get("PADDLE_LOCAL_RANK") == "0":
                return pid, None
        ended = ended_sibling_result(parent, process_start_ticks(os.getpid()))
        if ended is not None:
            return None, ended
        if time.monotonic() > deadline:
            return None, None
        time.sleep(POLL_SECONDS)


def ended_sibling_result(parent: int, own_start: int | None) -> Path | None:
    """Return the result file of a process of this job that has ended, or None.

    The file must name `parent` (with its start time) as its launcher, and its
    process must have started within SIBLING_START_SECONDS of `own_start`,
    this process's start in clock ticks. The
    launcher starts the processes of a node in one loop, while a result left
    by an earlier job of the same parent (a test harness that starts the
    ranks itself) is older.
    """
    launcher = [parent, process_start_ticks(parent)]
    window = SIBLING_START_SECONDS * os.sysconf("SC_CLK_TCK")
    for path in RESULT_FOLDER.glob(f"inputs-{socket.gethostname()}-*.json"):
        owner = _result_owner(path)
        if owner is None or own_start is None or abs(owner[1] - own_start) > window:
            continue
        if process_running(*owner):
            continue  # a live local rank 0 is found through the process list
        try:
            written_by = json.loads(path.read_text(encoding="utf-8")).get("launcher")
        except (OSError, ValueError, AttributeError):
            continue  # a half-written or foreign file is not this job's result
        if written_by == launcher:
            return path
    return None


def child_processes(parent: int) -> list[int]:
    """Return the ids of the processes whose parent is `parent`, read from /proc."""
    children = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


def process_environment(pid: int) -> dict[str, str]:
    """Return the environment a process started with (/proc/PID/environ), or {} when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode("utf-8", "replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _separator, value in pairs}


def process_running(pid: int, started: int | None) -> bool:
    """True while process `pid` runs and is the one that started at `started` ticks; an exited process not yet reaped (state Z) is not running."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == started


def process_start_ticks(pid: int) -> int | None:
    """Return a process's start time in clock ticks after boot (/proc/PID/stat, field 22), or None when it is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def _stat_fields(pid: int) -> list[str] | None:
    """Return the fields of /proc/PID/stat after the command name (field 3 on), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces, so the fields start after the last ')'.
    return text[text.rindex(")") + 2:].split()
