"""`python -m agent check --html`: the same report as a self-contained static page with SVG plots."""

import re

from agent.cli import main
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
