"""Checks of free text that people send, before it reaches the database."""

import unicodedata

# Control characters (Cc: C0, DEL and C1) and lone surrogates (Cs). PostgreSQL text cannot hold NUL, and
# a lone surrogate cannot be encoded as UTF-8, so either one would fail the query with a server error.
REJECTED_CATEGORIES = frozenset({"Cc", "Cs"})
# Line breaks and tabs that multi-line text such as a note may contain.
TEXT_WHITESPACE = frozenset("\t\n\r")


def first_control_character(value: str, *, allow_whitespace: bool = False) -> str | None:
    """Return the first control character or lone surrogate in `value`, written as U+XXXX, or None when there is none."""
    for character in value:
        if allow_whitespace and character in TEXT_WHITESPACE:
            continue
        if unicodedata.category(character) in REJECTED_CATEGORIES:
            return f"U+{ord(character):04X}"
    return None
