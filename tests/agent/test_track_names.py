"""Tracks named for people in the agent's messages, with the portal's words, not by their ids."""

import logging
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import EXIT_USAGE
from agent.tracks import TRACK_NAMES, track_name, track_names
from tests.agent.test_cmd_check_validate import make_bundles
from tests.agent.test_messages_language import read_po

REPOSITORY = Path(__file__).resolve().parents[2]
PORTAL_PO = REPOSITORY / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


@pytest.mark.parametrize("track, chinese", [("finetuning", "调优"), ("pretraining", "预训练"), ("inference", "推理"), ("dpo", "DPO")])
def test_chinese_name_is_portals(track, chinese):
    portal = read_po(PORTAL_PO)

    assert track_name(track, "zh") == chinese
    assert portal[TRACK_NAMES[track]] == chinese


def test_unknown_track_keeps_id():
    assert track_name("distillation", "zh") == "distillation"


def test_names_joined_per_language():
    assert track_names(["pretraining", "finetuning"], "zh") == "预训练、调优"
    assert track_names(["pretraining", "finetuning"], "en") == "pretraining, fine-tuning"


@pytest.mark.parametrize("language, expected", [
    ("zh", "配置档 smoke：规则包 smoke-2026.1，认证方向 预训练、调优、推理，"),
    ("en", "profile smoke: rule pack smoke-2026.1, tracks pretraining, fine-tuning, inference, "),
])
def test_profile_line_names_tracks(tmp_path, caplog, language, expected):
    # A file as --out stops the run right after the profile line, before Paddle's import.
    out = tmp_path / "afile"
    out.write_text("not a folder", encoding="utf-8")
    caplog.set_level(logging.INFO)

    code = main(["--lang", language, "run", "--profile", "smoke", "--out", str(out)])

    profile_lines = [record.getMessage() for record in caplog.records if record.name == "agent.runner.execute"]
    assert code == EXIT_USAGE
    assert profile_lines[0].startswith(expected)


def test_check_level_summary_in_chinese(tmp_path, capsys):
    main(make_bundles(tmp_path) + ["--lang", "zh"])

    lines = capsys.readouterr().out.splitlines()
    assert "调优: 级别 1/2" in lines
    assert [line for line in lines if line.startswith(("finetuning:", "pretraining:", "inference:"))] == []


def test_html_report_names_tracks_in_chinese(tmp_path, capsys):
    out = tmp_path / "report"

    main(make_bundles(tmp_path) + ["--lang", "zh", "--html", str(out)])

    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<tr><td>调优</td>" in page
    assert "<td>finetuning</td>" not in page
