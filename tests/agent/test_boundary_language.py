"""Chinese output without English left in it: input labels, run folder refusals, argparse's help and errors, plurals."""

import argparse
import logging
import shutil
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import EXIT_USAGE, AgentError
from agent.i18n import ngettext, set_language
from agent.runner import RunRequest, start_run
from agent.runner.checkpoints import describe_input, verify_checkpoint
from certification.rulepack import load_rule_pack

REPO = Path(__file__).resolve().parents[2]


def test_run_folder_with_run_in_chinese(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}", encoding="utf-8")

    code = main(["--lang", "zh", "run", "--profile", "smoke", "--out", str(out)])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"error[run_folder_not_empty]: 输出目录 {out} 已包含另一次运行" in error
    assert "another run" not in error


def test_data_labels_in_chinese(tmp_path, caplog):
    shutil.copytree(REPO / "data", tmp_path / "data")
    with open(tmp_path / "data" / "pretrain" / "tinyshakespeare.txt", "a", encoding="utf-8") as stream:
        stream.write("One more line.\n")
    set_language("zh")

    with caplog.at_level(logging.INFO, logger="agent"), pytest.raises(AgentError) as error:
        start_run(RunRequest(profile="smoke", out=tmp_path / "run", resume=False, data_root=tmp_path))

    assert error.value.code == "data_checksum_mismatch"
    assert "数据集 pretrain_shakespeare" in error.value.message
    assert "dataset" not in error.value.message
    digest_lines = [record.getMessage() for record in caplog.records if "的摘要" in record.getMessage()]
    assert digest_lines
    assert not [line for line in digest_lines if "dataset " in line or "tokenizer " in line]


def test_checkpoint_label_in_chinese(tmp_path):
    set_language("zh")

    with pytest.raises(AgentError) as error:
        verify_checkpoint(load_rule_pack("standard-2024.1"), "llama1-13b", tmp_path / "none")

    assert error.value.code == "checkpoint_missing"
    assert "模型 llama1-13b 的检查点" in error.value.message
    assert "checkpoint of model" not in error.value.message


@pytest.mark.parametrize(("label", "english", "chinese"), [
    ("dataset lambada", "dataset lambada", "数据集 lambada"),
    ("tokenizer llama2", "tokenizer llama2", "分词器 llama2"),
    ("checkpoint llama1-13b", "checkpoint of model llama1-13b", "模型 llama1-13b 的检查点"),
])
def test_input_labels(label, english, chinese):
    assert describe_input(label) == english
    set_language("zh")
    assert describe_input(label) == chinese


def test_argparse_help_in_chinese(capsys):
    with pytest.raises(SystemExit):
        main(["--lang", "zh", "run", "--help"])

    help_text = capsys.readouterr().out
    assert help_text.startswith("用法：python -m agent run")
    assert "选项:" in help_text
    assert "显示此帮助信息并退出" in help_text
    for english in ("usage:", "options:", "show this help message and exit"):
        assert english not in help_text


def test_argparse_positional_title_in_chinese(capsys):
    with pytest.raises(SystemExit):
        main(["--lang", "zh", "validate-pack", "--help"])

    assert "位置参数:" in capsys.readouterr().out


def test_argparse_error_in_chinese(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--lang", "zh", "run"])

    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "python -m agent run：错误：缺少以下必需参数：--profile" in error
    assert "the following arguments are required" not in error


def test_argparse_restored_after_parsing(capsys):
    with pytest.raises(SystemExit):
        main(["--lang", "zh", "run", "--help"])
    capsys.readouterr()

    # Another parser in the same process keeps argparse's own English.
    assert argparse.ArgumentParser(prog="other").format_help().startswith("usage: other")


@pytest.mark.parametrize(("count", "expected"), [
    (1, "run finished in R: the 1 workload is done"),
    (3, "run finished in R: all 3 workloads are done"),
])
def test_plural_forms(count, expected):
    template = ngettext("run finished in {path}: the {total} workload is done",
                        "run finished in {path}: all {total} workloads are done", count)

    assert template.format(path="R", total=count) == expected


def test_plural_in_chinese():
    set_language("zh")

    assert ngettext("{count} problem in {path}", "{count} problems in {path}", 1).format(count=1, path="p") == "p 中有 1 个问题"
    assert ngettext("{count} problem in {path}", "{count} problems in {path}", 2).format(count=2, path="p") == "p 中有 2 个问题"


def test_help_language_defaults_agree(capsys):
    with pytest.raises(SystemExit):
        main(["--lang", "en", "check", "--help"])

    help_text = " ".join(capsys.readouterr().out.split())
    assert "LC_ALL, LC_MESSAGES or LANG" in help_text
    assert "from LANG" not in help_text
