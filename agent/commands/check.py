"""`python -m agent check`: verify a bundle and print the portal's verdict, minus human evaluation."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands._options import path_option
from agent.commands._verification import load_keyring, open_verified
from agent.errors import EXIT_OK, EXIT_USAGE, EXIT_VERDICT_FAILED, AgentError, from_coded_error, os_error_reason
from agent.gaps import split_gap, unplanned_text
from agent.i18n import _, choose_language
from agent.tracks import track_name
from certification.bundle import VerifiedBundle
from certification.rulepack import RulePack, RulePackError, load_rule_pack, parse_rule_pack

if TYPE_CHECKING:
    from certification.verdict import Verdict

STATUS_LABELS = {
    "zh": {"pass": "通过", "fail": "未通过", "pending": "待定", "not_applicable": "不适用", "refused": "无法比较"},
    "en": {"pass": "PASS", "fail": "FAIL", "pending": "PENDING", "not_applicable": "N/A", "refused": "REFUSED"},
}
FIELD_LABELS = {
    "zh": {"measured": "实测", "reference": "参考", "bound": "界限", "hint": "建议", "level": "级别", "gap": "差距", "pack": "规则包"},
    "en": {"measured": "measured", "reference": "reference", "bound": "bound", "hint": "hint", "level": "level", "gap": "gap", "pack": "rule pack"},
}


def add_arguments(parser):
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help=_("vendor bundle to judge"))
    parser.add_argument("--reference", dest="references", action="append", required=True, type=Path, metavar="REF_BUNDLE", help=_("reference bundle; repeat for several"))
    parser.add_argument("--public-key", dest="public_keys", action="append", required=True, type=Path, metavar="PUB", help=_("trusted public key file for the bundle and the references; repeat for several"))
    parser.add_argument("--peak", action="append", default=[], metavar="TYPE=TFLOPS", help=_("vendor card peak dense TFLOPS for a data type, such as bf16=312"))
    parser.add_argument("--reference-peak", action="append", default=[], metavar="TYPE=TFLOPS", help=_("reference card peak dense TFLOPS for a data type, such as bf16=312"))
    parser.add_argument("--rule-pack", type=Path, metavar="FILE", help=_("rule pack YAML file (default: the shipped pack that the bundle names)"))
    parser.add_argument("--lang", choices=("zh", "en"), help=_("language of the report: zh or en (default: Chinese when LC_ALL, LC_MESSAGES or LANG starts with zh_, else English)"))
    parser.add_argument("--json", action="store_true", help=_("print the verdict as JSON instead of text"))
    parser.add_argument("--html", metavar="DIR", help=_("also write the report with its plots as a static page, DIR/index.html, for labs without the portal"))


def parse_peaks(values: list[str], option: str) -> dict[str, float]:
    """Turn `TYPE=TFLOPS` strings into a dict of data type -> TFLOPS, raising AgentError for a number that is not finite and above 0."""
    peaks = {}
    for value in values:
        data_type, _separator, number = value.partition("=")
        try:
            peak = float(number)
        except ValueError:
            raise AgentError("peak_invalid", _("invalid {option} value {value}").format(option=option, value=repr(value)),
                             _("write {option} TYPE=TFLOPS, such as {option} bf16=312").format(option=option)) from None
        # float() reads "inf", "nan" and a number too large for a double, such as 1e400, as infinity or NaN.
        if not (math.isfinite(peak) and peak > 0):
            raise AgentError("peak_invalid", _("{option} {value} is not a finite number above 0").format(option=option, value=repr(value)),
                             _("pass the card's registered peak dense TFLOPS"))
        peaks[data_type.strip().lower()] = peak
    return peaks


def load_pack(path: Path | None, name: str) -> RulePack:
    try:
        return parse_rule_pack(path.read_bytes()) if path else load_rule_pack(name)
    except OSError as error:
        raise AgentError("rule_pack_unreadable", _("cannot read {path}: {reason}").format(path=path, reason=os_error_reason(error)),
                         _("check the --rule-pack path")) from None
    except RulePackError as error:
        failure = from_coded_error(error, EXIT_USAGE)
        if path:
            failure.message = _("rule pack {path}: {message}").format(path=path, message=failure.message)
        raise failure from None


def run(args) -> int:
    # Imported here because the verdict engine loads ROUGE with NLTK and SciPy, seconds on a busy machine,
    # which `check --help` and a command line that argparse rejects do not need.
    from certification.verdict import Reference, VerdictInputError, judge

    report_folder = check_report_folder(args.html)
    keyring = load_keyring(args.public_keys)
    bundle = open_verified(args.bundle, keyring)
    reference_peaks = parse_peaks(args.reference_peak, "--reference-peak")
    references = [Reference(open_reference(path, keyring), reference_peaks) for path in args.references]
    pack = load_pack(args.rule_pack, bundle.rule_pack["name"])
    # The portal calls this same function with the same inputs (portal.submissions.pipeline).
    try:
        verdict = judge(bundle, references, pack, parse_peaks(args.peak, "--peak"))
    except VerdictInputError as error:
        raise from_coded_error(error, EXIT_USAGE) from None

    language = choose_language(args.lang)
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False, indent=2, allow_nan=False))
    else:
        print(format_verdict(verdict, language))
    if report_folder is not None:
        write_html(report_folder, verdict, bundle, references, language)
    return EXIT_VERDICT_FAILED if verdict.failed else EXIT_OK


def open_reference(path: Path, keyring) -> VerifiedBundle:
    """Open a reference bundle. For a signature by an unknown key, the hint requests the reference lab's key, not the vendor's."""
    try:
        return open_verified(path, keyring)
    except AgentError as error:
        if error.code == "signature_key_unknown":
            error.hint = _("pass the reference lab's public key file (.pub) with another --public-key option, "
                           "next to the vendor's key; the reference lab or the portal's staff provide it")
        raise


def check_report_folder(value: str | None) -> Path | None:
    """Return the folder given to --html, or None without the option; raise AgentError for an empty path or a file, before any bundle is judged."""
    folder = path_option("--html", value, _("pass the folder to write index.html into, such as --html report"))
    if folder is not None and folder.exists() and not folder.is_dir():
        raise AgentError("report_folder_is_file", _("--html {path} is a file, not a folder").format(path=folder),
                         _("pass a folder to write index.html into, such as --html report; the agent creates it when it is missing"))
    return folder


def write_html(out_dir: Path, verdict: Verdict, bundle, references, language: str) -> None:
    from agent.report_html import write_report

    try:
        path = write_report(out_dir, verdict, bundle, references, language, STATUS_LABELS[language])
    except OSError as error:
        raise AgentError("report_unwritable", _("cannot write the report into {path}: {reason}").format(path=out_dir, reason=os_error_reason(error)),
                         _("check that the folder is writable")) from None
    print(_("report: {path}").format(path=path), file=sys.stderr)


def format_verdict(verdict: Verdict, language: str) -> str:
    labels, statuses = FIELD_LABELS[language], STATUS_LABELS[language]
    lines = [f"{labels['pack']}: {verdict.rule_pack['name']} (sha256 {verdict.rule_pack['sha256']}), {labels['reference']}: {verdict.reference_kind}", ""]
    for result in verdict.criteria:
        lines.append(f"[{statuses[result.status]}] {result.id} ({result.workload})")
        lines.append(f"    {labels['measured']}: {show_value(result.measured)}  {labels['reference']}: {show_value(result.reference)}  {labels['bound']}: {show_value(result.bound)}")
        lines.append(f"    {result.explanation[language]}")
        if result.status != "pass":
            lines.append(f"    {labels['hint']}: {result.hint[language]}")
    from agent.verdict_inputs import format_inputs  # imports the verdict engine: only when judging

    inputs = format_inputs(verdict.inputs, language)
    if inputs:
        lines.extend(["", *inputs])
    lines.append("")
    for track, outcome in verdict.tracks.items():
        ran, unplanned = split_gap(outcome["gap"])
        gap = ", ".join(format_gap_item(item, language) for item in ran)
        lines.append(f"{track_name(track, language)}: {labels['level']} {outcome['level']}/{outcome['max_level']}" + (f"  {labels['gap']}: {gap}" if gap else ""))
        if unplanned:
            lines.append("    " + unplanned_text(outcome["gap"][0]["level"], unplanned, verdict.rule_pack["name"], language))
    for flag in verdict.flags:
        lines.append(f"! {flag['explanation'][language]} {labels['hint']}: {flag['hint'][language]}")
    return "\n".join(lines)


def format_gap_item(item: dict, language: str) -> str:
    """Name one blocker of a track's next level: a criterion with its status, or a required track with its level."""
    if "status" in item:
        status = STATUS_LABELS[language].get(item["status"], item["status"])
        return f"{item.get('criterion')} ({status})"
    return f"{track_name(item.get('requires_track'), language)} ({FIELD_LABELS[language]['level']} {item.get('reached')})"


def show_value(value: object) -> str:
    """Format a measured value, reference or bound for people: 4 significant digits, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {show_value(item)}" for key, item in value.items()) + "}"
    return str(value)
