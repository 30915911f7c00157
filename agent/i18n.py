"""The agent's message language: Simplified Chinese or English, through gettext.

Messages are written in English in the source and wrapped in `_()`, with named
placeholders filled after translation (`_("no file at {path}").format(path=p)`)
so that a translation can put them in its own order. The Chinese catalogue is
agent/locale/zh_CN/LC_MESSAGES/agent.po, compiled to agent.mo with `msgfmt`.

The language is, in order: `--lang {zh,en}` on the command line, then the first
set one of LC_ALL, LC_MESSAGES and LANG (zh_* gives Chinese), then English.
"""

from __future__ import annotations

import gettext
import os
from functools import lru_cache
from pathlib import Path

DOMAIN = "agent"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("zh", "en")
_GETTEXT_LANGUAGE = {"zh": "zh_CN", "en": "en"}
# Accept-Language values sent to the portal (Django, LANGUAGES zh-hans and en), so that its messages match the agent's.
_ACCEPT_LANGUAGE = {"zh": "zh-Hans, zh;q=0.9", "en": "en"}

_chosen: str | None = None


def language_from_environment() -> str:
    """Return "zh" when the first set one of LC_ALL, LC_MESSAGES and LANG starts with zh, else "en"."""
    locale = os.environ.get("LC_ALL") or os.environ.get("LC_MESSAGES") or os.environ.get("LANG") or ""
    return "zh" if locale.lower().startswith("zh") else "en"


def choose_language(flag: str | None = None) -> str:
    """Return `flag` when given ("zh" or "en"), else the language set for this process, else the environment's."""
    if flag:
        if flag not in LANGUAGES:
            raise ValueError(f"unknown language {flag!r}; use one of {', '.join(LANGUAGES)}")
        return flag
    return _chosen or language_from_environment()


def set_language(flag: str | None) -> str:
    """Fix the language of this process's messages (None: back to the environment's) and return it."""
    global _chosen
    _chosen = choose_language(flag) if flag else None
    return choose_language()


def language_in_argv(argv: list[str]) -> str | None:
    """Return the value of the first `--lang X` or `--lang=X` in `argv` that names a known language."""
    for index, item in enumerate(argv):
        if item == "--":
            break
        value = None
        if item == "--lang" and index + 1 < len(argv):
            value = argv[index + 1]
        elif item.startswith("--lang="):
            value = item.partition("=")[2]
        if value in LANGUAGES:
            return value
    return None


@lru_cache(maxsize=None)
def _catalogue(language: str) -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[_GETTEXT_LANGUAGE[language]], fallback=True)


def _(message: str) -> str:
    """Return `message` in the current language (the English text when no translation exists)."""
    return _catalogue(choose_language()).gettext(message)


def gettext_in(language: str, message: str) -> str:
    """Return `message` in `language` ("zh" or "en") whatever the process's language, for output that names its own language."""
    return _catalogue(choose_language(language)).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """Return the form of a message for `count` in the current language (Chinese has one form for every count)."""
    return _catalogue(choose_language()).ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Mark `message` for the catalogue without translating it now (module constants); translate it with `_()` later."""
    return message


def accept_language() -> str:
    """Return the Accept-Language header value that requests the current language from the portal."""
    return _ACCEPT_LANGUAGE[choose_language()]
