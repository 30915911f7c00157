"""Aligned `label: value` lines for the command summaries, with labels in the user's language."""

from __future__ import annotations

import unicodedata

from agent.i18n import N_, _

# The labels that `verify`, `bundle` and `upload` print, marked here for the catalogue.
LABELS = {
    "verified": N_("verified"),
    "bundle": N_("bundle"),
    "bundle_id": N_("bundle id"),
    "key_id": N_("key id"),
    "signed_at": N_("signed at"),
    "rule_pack": N_("rule pack"),
    "sha256": N_("sha256"),
    "files": N_("files"),
    "workloads": N_("workloads"),
    "ticket": N_("ticket"),
    "submission": N_("submission"),
    "url": N_("url"),
}


def format_fields(rows: list[tuple[str, object]]) -> str:
    """Return one `label: value` line per (label key, value), with the values aligned in one column."""
    labels = [_(LABELS[key]) + ":" for key, _value in rows]
    width = max(display_width(label) for label in labels)
    return "\n".join(f"{label}{' ' * (width - display_width(label) + 1)}{value}" for label, (_key, value) in zip(labels, rows))


def display_width(text: str) -> int:
    """Return the terminal columns of `text`: two for each wide or full-width character such as a Chinese one."""
    return sum(2 if unicodedata.east_asian_width(character) in ("W", "F") else 1 for character in text)
