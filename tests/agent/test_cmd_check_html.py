"""`python -m agent check --html`: the same report as a self-contained static page with SVG plots."""

import re
import warnings

import pytest

from agent.cli import main
from agent.commands.check import write_html
from agent.i18n import set_language
from certification.verdict import Reference, judge
from tests.certification.runfolder import PACK
from tests.certification.test_verdict import PEAKS, make_bundle
from agent.errors import EXIT_OK, EXIT_VERDICT_FAILED
from tests.agent.test_cmd_check_validate import make_bundles


def test_html_report_has_verdict_and_plots(tmp_path, capsys):
    out = tmp_path / "report"

    code = main(make_bundles(tmp_path) + ["--lang", "en", "--html", str(out)])

    page = (out / "index.html").read_text(encoding="utf-8")
    printed = capsys.readouterr().out
    assert code in (EXIT_OK, EXIT_VERDICT_FAILED)
    assert "pretrain.lambada" in page
    # The page shows exactly the criteria the text report printed, with the same statuses.
    assert page.count('<span class="pass">') == printed.count("[PASS]")
    assert page.count('<span class="fail">') == printed.count("[FAIL]")
    assert page.count("<svg") >= 2
    assert "training loss" in page


def test_html_report_loads_nothing_from_outside(tmp_path, capsys):
    out = tmp_path / "report"

    main(make_bundles(tmp_path) + ["--html", str(out)])

    page = (out / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page


def test_html_report_in_chinese(tmp_path, capsys):
    out = tmp_path / "report"

    main(make_bundles(tmp_path) + ["--lang", "zh", "--html", str(out)])

    page = (out / "index.html").read_text(encoding="utf-8")
    assert "认证自查报告" in page
    assert "通过" in page


def test_html_report_escapes_bundle_text(tmp_path, capsys):
    out = tmp_path / "report"

    main(make_bundles(tmp_path, card_model="<script>alert(1)</script>") + ["--html", str(out)])

    assert "<script>alert" not in (out / "index.html").read_text(encoding="utf-8")


def test_html_report_names_unplanned_workloads(tmp_path, capsys):
    out = tmp_path / "report"

    main(make_bundles(tmp_path) + ["--lang", "en", "--html", str(out)])

    page = (out / "index.html").read_text(encoding="utf-8")
    assert "level 2 needs workloads that this run did not plan: sd-sft-digits (profile demo-sd)" in page
    assert "sd-sft-digits.fixed_hyperparameters" not in page.split("<h2>")[-1]


@pytest.mark.parametrize("process_language, language, expected", [
    ("en", "zh", "第 2 级需要本次运行未计划的工作负载：sd-sft-digits（配置 demo-sd）"),
    ("zh", "en", "level 2 needs workloads that this run did not plan: sd-sft-digits (profile demo-sd)"),
])
def test_html_unplanned_follows_language_argument(tmp_path, capsys, process_language, language, expected):
    reference = make_bundle(tmp_path / "reference")
    vendor = make_bundle(tmp_path / "vendor")
    references = [Reference(reference, PEAKS)]
    verdict = judge(vendor, references, PACK, PEAKS)
    set_language(process_language)

    write_html(tmp_path / "report", verdict, vendor, references, language)

    assert expected in (tmp_path / "report" / "index.html").read_text(encoding="utf-8")


def test_chinese_plots_use_cjk_font(tmp_path, capsys):
    from matplotlib.ft2font import FT2Font

    from agent.report_html import CJK_FONT_PATH

    out = tmp_path / "report"
    arguments = make_bundles(tmp_path) + ["--lang", "zh", "--html", str(out)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(arguments)

    page = (out / "index.html").read_text(encoding="utf-8")
    font = FT2Font(str(CJK_FONT_PATH))
    missing = [str(warning.message) for warning in caught if "missing from font" in str(warning.message)]
    assert missing == []
    # The plots draw text as paths: each character is a <path> defined once under the font's name and glyph index.
    for character in "训练损失待测卡":
        assert f'id="WenQuanYiMicroHei-{font.get_char_index(ord(character)):x}"' in page, character
