import json
import shutil

import pytest

from agent.cli import main
from agent.commands.check import parse_peaks
from agent.errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_VERDICT_FAILED, AgentError
from certification.bundle import write_bundle
from certification.rulepack import RULEPACK_DIR
from certification.signing import generate_key, save_public_key
from tests.certification.runfolder import build_run


def make_bundles(tmp_path, **vendor_options):
    key = generate_key()
    save_public_key(key, tmp_path / "vendor.pub")
    vendor = write_bundle(build_run(tmp_path / "vendor", **vendor_options), tmp_path / "vendor.tar", key).path
    reference = write_bundle(build_run(tmp_path / "reference"), tmp_path / "reference.tar", key).path
    return ["check", str(vendor), "--reference", str(reference), "--public-key", str(tmp_path / "vendor.pub"), "--peak", "fp32=1", "--reference-peak", "fp32=1"]


def test_check_passes_matching_runs(tmp_path, capsys):
    code = main(make_bundles(tmp_path) + ["--lang", "en"])

    output = capsys.readouterr().out
    assert code == EXIT_OK
    assert "[PASS] pretrain.lambada" in output
    assert "demo-2026.1" in output


def test_check_fails_with_exit_code(tmp_path, capsys):
    code = main(make_bundles(tmp_path, tokens_per_second=100.0) + ["--lang", "zh"])

    output = capsys.readouterr().out
    assert code == EXIT_VERDICT_FAILED
    assert "[未通过] pretrain.throughput" in output


def test_check_language_from_locale(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)

    main(make_bundles(tmp_path))

    assert "[通过]" in capsys.readouterr().out


def test_check_json_output(tmp_path, capsys):
    main(make_bundles(tmp_path) + ["--json"])

    verdict = json.loads(capsys.readouterr().out)
    assert verdict["rule_pack"]["name"] == "demo-2026.1"
    assert verdict["tracks"]["pretraining"]["level"] == 1


def test_check_rejects_bad_peak(tmp_path, capsys):
    code = main(make_bundles(tmp_path) + ["--peak", "fp32=abc"])

    assert code == EXIT_USAGE
    assert "peak_invalid" in capsys.readouterr().err


def test_validate_pack_accepts_shipped(capsys):
    code = main(["validate-pack", str(RULEPACK_DIR / "demo-2026.1.yaml")])

    assert code == EXIT_OK


def test_validate_pack_lists_every_problem(tmp_path, capsys):
    path = tmp_path / "demo-2026.1.yaml"
    shutil.copy(RULEPACK_DIR / "demo-2026.1.yaml", path)
    path.write_text(path.read_text().replace("schema: 1", "schema: 2").replace("reference_kind: cpu-demo", "reference_kind: gpu"))

    code = main(["validate-pack", str(path)])

    output = capsys.readouterr().out
    assert code == EXIT_REJECTED
    assert ": schema:" in output
    assert ": reference_kind:" in output


def test_validate_pack_checks_file_name(tmp_path, capsys):
    path = tmp_path / "renamed.yaml"
    shutil.copy(RULEPACK_DIR / "demo-2026.1.yaml", path)

    code = main(["validate-pack", str(path)])

    assert code == EXIT_REJECTED
    assert "demo-2026.1.yaml" in capsys.readouterr().out


def test_check_names_the_corrupt_reference(tmp_path, capsys):
    arguments = make_bundles(tmp_path)
    reference = tmp_path / "reference.tar"
    corrupt = tmp_path / "corrupt.tar"
    shutil.copy(reference, corrupt)
    arguments[arguments.index(str(reference))] = str(corrupt)
    data = bytearray(corrupt.read_bytes())
    position = data.index(b'"status"')
    data[position + 1] = ord("S")
    corrupt.write_bytes(bytes(data))

    code = main(arguments)

    err = capsys.readouterr().err
    assert code == EXIT_REJECTED
    assert f"bundle {corrupt}:" in err


@pytest.mark.parametrize("value", ["fp32=0", "fp32=-1", "fp32=nan", "fp32=inf", "fp32=1e400", "fp32=-inf"])
def test_peak_not_finite_and_positive(value):
    with pytest.raises(AgentError) as error:
        parse_peaks([value], "--peak")

    assert error.value.code == "peak_invalid"
    assert error.value.message == f"--peak {value!r} is not a finite number above 0"


def test_peak_infinite_on_command_line(tmp_path, capsys):
    code = main(make_bundles(tmp_path) + ["--lang", "zh", "--peak", "fp32=1e400"])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[peak_invalid]" in error
    assert "1e400" in error


@pytest.mark.parametrize(("language", "expected"), [("en", "is a file, not a folder"), ("zh", "是文件，不是文件夹")])
def test_html_path_is_a_file(tmp_path, capsys, language, expected):
    existing = tmp_path / "report.html"
    existing.write_text("old report", encoding="utf-8")

    code = main(make_bundles(tmp_path) + ["--lang", language, "--html", str(existing)])

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert f"error[report_folder_is_file]: --html {existing} " in captured.err
    assert expected in captured.err
    assert captured.out == ""
    assert existing.read_text(encoding="utf-8") == "old report"


def test_html_path_empty(tmp_path, capsys):
    code = main(make_bundles(tmp_path) + ["--lang", "en", "--html", ""])

    assert code == EXIT_USAGE
    assert "error[option_empty]: --html is empty" in capsys.readouterr().err
