"""The run's log file, RUN/agent.log: the agent's log lines of a run, with the tracebacks of failed workloads.

The terminal shows a failed workload as one line and its traceback only with --verbose, so the traceback
is kept here. Only global rank 0 writes the file, as it writes the rest of the run folder; a resumed run
appends to it. The bundle leaves it out (certification.bundle.UNPACKED_FILES), because it is no result.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from agent.log_format import LINE_FORMAT, LocalTimeFormatter
from agent.runner.folder import RunFolder

LOG_NAME = "agent.log"

# The parent of every logger of the agent, whose lines the run log copies.
AGENT_LOGGER = logging.getLogger("agent")
# Lines that go to the run log and nowhere else, such as the traceback of a failed workload.
_RUN_LOG_ONLY = logging.getLogger("agent.run_log")
_RUN_LOG_ONLY.propagate = False
# Without a run log (a rank that does not write the folder), its lines are dropped, not printed by logging's last resort.
_RUN_LOG_ONLY.addHandler(logging.NullHandler())


@contextlib.contextmanager
def run_log(folder: RunFolder) -> Iterator[None]:
    """Write the agent's log lines of information level and above to the run log while the block runs."""
    if not folder.writer:
        yield
        return
    handler = logging.FileHandler(folder.path / LOG_NAME, encoding="utf-8")
    handler.setFormatter(LocalTimeFormatter(LINE_FORMAT))
    handler.setLevel(logging.INFO)
    for logger in (AGENT_LOGGER, _RUN_LOG_ONLY):
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in (AGENT_LOGGER, _RUN_LOG_ONLY):
            logger.removeHandler(handler)
        handler.close()


def log_traceback(logger: logging.Logger, message: str, error: BaseException) -> None:
    """Write `message` with the traceback of `error` to the run log; with --verbose (debug level) `logger` shows it too."""
    _RUN_LOG_ONLY.error(message, exc_info=error)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(message, exc_info=error)
