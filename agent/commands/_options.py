"""Checks of option values that argparse accepts but the commands cannot use: empty paths and names, control characters."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from agent.errors import AgentError
from agent.i18n import _


def path_option(option: str, value: str | None, hint: str) -> Path | None:
    """Return the path given to `option`, or None when the option is absent; raise AgentError for an empty or blank one.

    argparse's `type=Path` would turn "" into Path("."), the current folder, so the commands read the text first.
    """
    if value is None:
        return None
    if not value.strip():
        raise AgentError("option_empty", _("{option} is empty").format(option=option), hint)
    return Path(value)


def name_option(option: str, value: str | None) -> str | None:
    """Return the name given to `option`, or None when the option is absent; raise AgentError for an empty one or one with control characters.

    The names go into run.json and the bundle, where a line break or an escape sequence would change
    how they read.
    """
    if value is None:
        return None
    if not value.strip():
        raise AgentError("option_empty", _("{option} is empty").format(option=option),
                         _("pass the name with {option}, or leave the option out to use the profile's").format(option=option))
    control = [character for character in value if unicodedata.category(character) == "Cc"]
    if control:
        raise AgentError("option_control_character", _("{option} {value} contains the control character {character}").format(
                             option=option, value=repr(value), character=repr(control[0])),
                         _("pass {option} on one line, without tabs, line breaks or escape sequences").format(option=option))
    return value
