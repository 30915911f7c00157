"""Small SVG charts drawn as text, so pages and the static site need no plotting library or script."""

from __future__ import annotations

from collections import Counter
from xml.sax.saxutils import escape, quoteattr

from django.utils.translation import gettext

from portal.certificates.models import Track

TRACK_ORDER = ["finetuning", "pretraining", "inference", "dpo"]
LEVEL_COLOURS = {1: "#8fb3e8", 2: "#3f7bd1", 3: "#0b3d91"}
# The system CJK fonts that portal.css names, then any sans-serif font. A chart served as its own file (an <img>)
# cannot use the page's web font, so on a machine without these fonts its Chinese labels show as boxes.
SVG_FONTS = "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'PingFang SC', sans-serif"


def levels_by_track_svg(certificates) -> str:
    """Draw a grouped bar chart of valid certificates per track and level, labelled in the active language."""
    counts = Counter((item.track, item.level) for item in certificates if not item.is_revoked)
    peak = max(counts.values(), default=0) or 1
    width, height, bar, gap = 520, 220, 26, 18
    bars = []
    for group, track in enumerate(TRACK_ORDER):
        x0 = 50 + group * (3 * bar + gap)
        label = escape(_track_label(track))
        bars.append(f'<text x="{x0 + 1.5 * bar}" y="{height - 8}" text-anchor="middle" font-size="12">{label}</text>')
        for offset, level in enumerate((1, 2, 3)):
            value = counts.get((track, level), 0)
            bar_height = 150 * value / peak
            x, y = x0 + offset * bar, height - 30 - bar_height
            bars.append(f'<rect x="{x}" y="{y:.1f}" width="{bar - 3}" height="{bar_height:.1f}" fill="{LEVEL_COLOURS[level]}"><title>{label} {level}: {value}</title></rect>')
            bars.append(f'<text x="{x + (bar - 3) / 2}" y="{y - 3:.1f}" text-anchor="middle" font-size="10">{value}</text>')
    legend = "".join(
        f'<rect x="{380 + index * 45}" y="8" width="10" height="10" fill="{colour}"/><text x="{394 + index * 45}" y="17" font-size="11">{"I" * level}</text>'
        for index, (level, colour) in enumerate(LEVEL_COLOURS.items())
    )
    description = quoteattr(gettext("Valid certificates per track and level"))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label={description} font-family="{SVG_FONTS}">'
        f'<line x1="45" y1="{height - 30}" x2="{width - 10}" y2="{height - 30}" stroke="#55606b"/>{"".join(bars)}{legend}</svg>'
    )


def _track_label(track: str) -> str:
    return str(Track(track).label) if track in Track.values else track


def level_history_svg(events: list[dict]) -> str:
    """Draw the level each submission of a card reached per track, in upload order, labelled in the active language."""
    submissions = [event for event in events if event["kind"] == "submission"]
    width, height = 520, 180
    step = (width - 80) / max(len(submissions) - 1, 1)
    lines = []
    for index, track in enumerate(TRACK_ORDER[:3]):
        points = [(60 + position * step, 140 - 40 * event["levels"].get(track, 0)) for position, event in enumerate(submissions)]
        colour = ["#b35c00", "#0b3d91", "#106b21"][index]
        label = _track_label(track)
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            lines.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"><title>{escape(label)}</title></polyline>')
            lines.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points)
        lines.append(f'<text x="{360 + index * 0}" y="{20 + index * 14}" font-size="11" fill="{colour}">{escape(label)}</text>')
    axis = "".join(f'<text x="8" y="{144 - 40 * level}" font-size="11">{"I" * level or "0"}</text>' for level in range(4))
    description = quoteattr(gettext("level reached per submission"))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label={description} font-family="{SVG_FONTS}">'
        f'<line x1="40" y1="140" x2="{width - 10}" y2="140" stroke="#55606b"/>{axis}{"".join(lines)}</svg>'
    )
