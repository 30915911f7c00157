"""Settings that the agent reads from environment variables."""

from __future__ import annotations

import os

from agent.errors import AgentError
from agent.i18n import _


def positive_seconds(variable: str, default: float) -> float:
    """Return the number of seconds in environment variable `variable`, or `default` when it is unset."""
    text = os.environ.get(variable)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise AgentError("setting_invalid", _("{variable}={value} is not a positive number of seconds").format(
                             variable=variable, value=repr(text)),
                         _("set it to, for example, {default:.0f}, or unset it").format(default=default))
    return value
