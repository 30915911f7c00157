"""The `agent check --html` report: one self-contained static page with the verdict and its plots.

Labs that cannot reach the portal open `index.html` in any browser: the
styles are inline and every plot is an inline SVG drawn with matplotlib, so
the page loads nothing from the network.
"""

from __future__ import annotations

import functools
import html
import io
import logging
from pathlib import Path

from agent.gaps import split_gap, unplanned_text
from agent.i18n import _
from agent.tracks import track_name
from agent.verdict_inputs import short_digest, workload_inputs
from certification.records import decode_float
from certification.verdict import Verdict

TEXT = {
    "zh": {
        "title": "认证自查报告", "bundle": "结果包", "pack": "规则包", "reference": "参考", "criterion": "判据",
        "workload": "工作负载", "status": "结果", "measured": "实测", "bound": "界限", "explanation": "说明",
        "hint": "建议", "tracks": "认证方向与级别", "track": "认证方向", "level": "级别", "gap": "差距", "plots": "曲线",
        "loss": "训练损失", "throughput": "每卡吞吐 (tokens/s)", "step": "步", "vendor": "待测卡",
        "note": "此报告由 python -m agent check 生成，与门户使用同一判定代码；人工评测不在其中。",
    },
    "en": {
        "title": "Certification self-check report", "bundle": "bundle", "pack": "rule pack", "reference": "reference",
        "criterion": "criterion", "workload": "workload", "status": "status", "measured": "measured", "bound": "bound",
        "explanation": "explanation", "hint": "hint", "tracks": "Tracks and levels", "track": "track", "level": "level",
        "gap": "gap", "plots": "Curves", "loss": "training loss", "throughput": "tokens/s per card", "step": "step",
        "vendor": "card under test",
        "note": "Written by python -m agent check with the same verdict code as the portal; human evaluation is not part of it.",
    },
}
# WenQuanYi Micro Hei, the CJK font that the repository ships for the portal and its certificates. matplotlib's
# DejaVu Sans has no CJK glyphs, and the plots draw text as paths, so Chinese labels need this font's glyphs.
CJK_FONT_PATH = Path(__file__).resolve().parents[1] / "static" / "fonts" / "wqy-microhei.ttf"
CJK_FONT_FAMILY = "WenQuanYi Micro Hei"

logger = logging.getLogger(__name__)

STYLE = """
body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}
.pass{color:#17702c;font-weight:bold}.fail,.refused{color:#b00020;font-weight:bold}.pending,.not_applicable{color:#7a6000}
.same-input{color:#17702c}.other-input{color:#b00020;font-weight:bold}
.plot{display:inline-block;margin:.5em}code{font-size:90%}
"""


def write_report(out_dir: Path, verdict: Verdict, bundle, references: list, language: str, status_labels: dict) -> Path:
    """Write `out_dir/index.html` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = TEXT[language]
    parts = [
        f"<!DOCTYPE html><html lang=\"{'zh-CN' if language == 'zh' else 'en'}\"><head><meta charset=\"utf-8\">",
        f"<title>{_e(text['title'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(text['title'])}</h1><p>{_e(text['note'])}</p>",
        _summary(verdict, text),
        _criteria_table(verdict, text, language, status_labels),
        _inputs_table(verdict, language),
        _tracks_table(verdict, text, language),
        _plots(bundle, references, text),
        "</body></html>",
    ]
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _summary(verdict: Verdict, text: dict) -> str:
    pack = verdict.rule_pack
    return (
        f"<p>{_e(text['bundle'])}: <code>{_e(verdict.bundle_id)}</code><br>"
        f"{_e(text['pack'])}: {_e(pack['name'])} (sha256 <code>{_e(pack['sha256'])}</code>)<br>"
        f"{_e(text['reference'])}: {_e(verdict.reference_kind)}</p>"
    )


def _criteria_table(verdict: Verdict, text: dict, language: str, status_labels: dict) -> str:
    from agent.commands.check import show_value

    head = "".join(f"<th>{_e(text[key])}</th>" for key in ("criterion", "workload", "status", "measured", "reference", "bound", "explanation", "hint"))
    rows = []
    for result in verdict.criteria:
        hint = result.hint[language] if result.status != "pass" else ""
        cells = [
            f"<code>{_e(result.id)}</code>", _e(result.workload),
            f"<span class=\"{_e(result.status)}\">{_e(status_labels[result.status])}</span>",
            _e(show_value(result.measured)), _e(show_value(result.reference)), _e(show_value(result.bound)),
            _e(result.explanation[language]), _e(hint),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _inputs_table(verdict: Verdict, language: str) -> str:
    """Return the input comparison of every workload: the reference used and why, then each input's digests."""
    workloads = workload_inputs(verdict.inputs, language)
    if not workloads:
        return ""
    # NOTE: these labels, like those of agent.verdict_inputs, follow the process language rather than `language`.
    # `agent check` sets both to the same language, so only a direct caller of write_report can see a mix.
    heads = (_("workload"), _("input"), _("vendor sha256"), _("reference sha256"), _("rule pack sha256"), _("equal"))
    head = "".join(f"<th>{_e(label)}</th>" for label in heads)
    rows = []
    for item in workloads:
        rows.append(f"<tr><td><code>{_e(item.workload)}</code></td><td colspan=\"5\">{_e(item.reference_note)}</td></tr>")
        for row in item.rows:
            cells = [
                "", f"{_e(row.kind_label)} <code>{_e(row.name)}</code>",
                _digest_cell(row.vendor), _digest_cell(row.reference), _digest_cell(row.pinned),
                f"<span class=\"{'same-input' if row.status == 'equal' else 'other-input'}\">{_e(row.status_label)}</span>",
            ]
            rows.append(f"<tr class=\"input-{_e(row.status)}\">" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    intro = _("The sha256 of every data set, corpus, tokenizer and checkpoint that the vendor run and the reference run recorded. "
              "A criterion is compared with the reference only when all inputs of its workload are equal and match the digest "
              "that the rule pack pins, where it pins one.")
    heading = _("Inputs compared with the reference")
    return (f"<h2 id=\"inputs\">{_e(heading)}</h2><p>{_e(intro)}</p>"
            f"<table class=\"inputs\"><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _digest_cell(digest: str | None) -> str:
    if not digest:
        return "-"
    return f"<code title=\"{_e(digest)}\">{_e(short_digest(digest))}</code>"


def _tracks_table(verdict: Verdict, text: dict, language: str) -> str:
    rows = []
    for track, outcome in verdict.tracks.items():
        ran, unplanned = split_gap(outcome["gap"])
        gap = ", ".join(str(item.get("criterion") or track_name(item.get("requires_track"), language)) for item in ran)
        if unplanned:
            gap = "; ".join(part for part in (gap, unplanned_text(outcome["gap"][0]["level"], unplanned, verdict.rule_pack["name"], language)) if part)
        rows.append(f"<tr><td>{_e(track_name(track, language))}</td><td>{outcome['level']}/{outcome['max_level']}</td><td>{_e(gap)}</td></tr>")
    head = f"<tr><th>{_e(text['track'])}</th><th>{_e(text['level'])}</th><th>{_e(text['gap'])}</th></tr>"
    return f"<h2>{_e(text['tracks'])}</h2><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _plots(bundle, references: list, text: dict) -> str:
    figures = []
    for workload in bundle.workloads():
        path = f"workloads/{workload}/steps.jsonl"
        if not bundle.has(path):
            continue
        series = {text["vendor"]: _steps(bundle, path)}
        for number, reference in enumerate(references, start=1):
            if reference.bundle.has(path):
                series[f"{text['reference']} {number}"] = _steps(reference.bundle, path)
        figures.append(_svg(f"{workload}: {text['loss']}", series, "loss", text["step"]))
        figures.append(_svg(f"{workload}: {text['throughput']}", series, "tokens_per_second_per_card", text["step"]))
    if not figures:
        return ""
    return f"<h2>{_e(text['plots'])}</h2>" + "".join(f"<div class=\"plot\">{figure}</div>" for figure in figures)


def _steps(bundle, path: str) -> list[dict]:
    return list(bundle.iter_jsonl(path))


def _svg(title: str, series: dict[str, list[dict]], key: str, x_label: str) -> str:
    """Draw one line per series of `key` against the step and return the SVG text."""
    import matplotlib

    matplotlib.use("svg")
    from matplotlib import pyplot

    # Latin text keeps DejaVu Sans, and matplotlib (3.6 and later) falls back to the CJK font for characters that it lacks.
    # Text is drawn as paths, so the report shows the glyphs without any font on the reader's machine.
    with matplotlib.rc_context({"font.family": ["DejaVu Sans", *plot_cjk_families()], "svg.fonttype": "path"}):
        figure, axes = pyplot.subplots(figsize=(6, 3.4))
        for label, rows in series.items():
            points = [point for row in rows if (point := _point(row, key)) is not None]
            axes.plot([step for step, _ in points], [value for _, value in points], label=label, linewidth=1.2)
        axes.set_title(title)
        axes.set_xlabel(x_label)
        axes.legend()
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
        pyplot.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


@functools.cache
def plot_cjk_families() -> list[str]:
    """Register the repository's CJK font file with matplotlib and return its family, or [] without the file.

    The font is read from the file, so no system font is needed. An agent installed without the
    repository's static/ folder has no such file, and matplotlib then warns about each missing glyph.
    """
    from matplotlib import font_manager

    if not CJK_FONT_PATH.is_file():
        logger.warning(_("CJK font {path} not found, so Chinese plot labels show as boxes").format(path=CJK_FONT_PATH))
        return []
    if not any(entry.fname == str(CJK_FONT_PATH) for entry in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(str(CJK_FONT_PATH))
    return [CJK_FONT_FAMILY]


def _point(row: dict, key: str) -> tuple[float, float] | None:
    """Return (step, value) of one record, or None when either is missing or not a number."""
    try:
        value = decode_float(row.get(key))
        return (float(row["step"]), value) if value is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def _e(value: object) -> str:
    return html.escape(str(value))
