"""Names of the certification tracks for people, in the agent's catalogue.

Rule packs, profiles and verdicts name a track by its id (`finetuning`). Messages name it as the portal
does: the English names of portal.certificates.models.Track, and in Chinese the same words as the
portal's catalogue (调优, 预训练, 推理).
"""

from __future__ import annotations

from agent.i18n import N_, choose_language, gettext_in

TRACK_NAMES = {
    "finetuning": N_("fine-tuning"),
    "pretraining": N_("pretraining"),
    "inference": N_("inference"),
    "dpo": N_("DPO"),
}
# The separator between the names of a list of tracks: Chinese lists take the enumeration comma.
SEPARATORS = {"zh": "、", "en": ", "}


def track_name(track: str, language: str | None = None) -> str:
    """Return the name of `track` in `language` (default: the process's language); a track id outside TRACK_NAMES is returned as it is."""
    if track not in TRACK_NAMES:
        return track
    return gettext_in(language or choose_language(), TRACK_NAMES[track])


def track_names(tracks: list[str], language: str | None = None) -> str:
    """Return the names of `tracks` in `language`, joined as a list."""
    language = language or choose_language()
    return SEPARATORS[language].join(track_name(track, language) for track in tracks)
