"""The agent's one diagnostic error type and its exit codes."""

from __future__ import annotations

# Exit codes of `python -m agent`. Scripts may rely on them.
EXIT_OK = 0
EXIT_FAILED = 1  # a workload or an unexpected internal error failed
EXIT_USAGE = 2  # bad command line, unknown profile, missing file
EXIT_REJECTED = 3  # a bundle, key or rule pack did not pass verification
EXIT_VERDICT_FAILED = 4  # `check` ran and at least one criterion failed
EXIT_REMOTE = 5  # the portal could not be reached or answered with an error
EXIT_INTERRUPTED = 130


class AgentError(Exception):
    """An error to show a person: what failed, on which value, and what to do.

    `code` is a stable reference string (for example `profile_not_found`) that
    tests and support staff can search for; `hint` says what to do next.
    """

    def __init__(self, code: str, message: str, hint: str = "", exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        from agent.i18n import _

        text = f"error[{self.code}]: {self.message}"
        if self.hint:
            text += "\n  " + _("hint: {hint}").format(hint=self.hint)
        return text


def from_core_error(error, exit_code: int = EXIT_USAGE) -> AgentError:
    """Turn a table error of the certification core (BundleError, TicketError) into an AgentError in the user's language.

    The core keeps English sentences; the agent's catalogue has their translations
    (scripts/agent_messages.sh extracts them from certification/errors.py).
    """
    from agent.i18n import _

    template, hint = error.table[error.code]
    return AgentError(error.code, _(template).format(value=error.value), _(hint), exit_code)


class WorkloadNotSupported(Exception):
    """A workload that the device cannot run, such as a data type without kernels.

    The runner records it with status "not_supported" and `details`, not as a crash.
    """

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}
