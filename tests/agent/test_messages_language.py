"""The agent's messages in Simplified Chinese and English, and the completeness of the Chinese catalogue."""

import ast
import gettext
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.commands.check import format_gap_item
from agent.errors import EXIT_REJECTED, EXIT_USAGE
from agent.i18n import DOMAIN, LOCALE_DIR, accept_language, choose_language, language_in_argv, set_language
from certification.errors import BUNDLE_ERRORS, TICKET_ERRORS
from tests.agent.test_cmd_check_validate import make_bundles
from tests.certification.runfolder import build_run

REPOSITORY = Path(__file__).resolve().parents[2]
PO_FILE = LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "agent.po"


@pytest.mark.parametrize("environment, expected", [
    ({"LANG": "zh_CN.UTF-8"}, "zh"),
    ({"LANG": "zh_TW.UTF-8"}, "zh"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LANG": "zh_CN.UTF-8", "LC_MESSAGES": "en_GB.UTF-8"}, "en"),
    ({"LANG": "en_US.UTF-8", "LC_ALL": "zh_CN.UTF-8"}, "zh"),
    ({}, "en"),
])
def test_language_from_environment(monkeypatch, environment, expected):
    monkeypatch.delenv("LANG", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert choose_language() == expected


def test_flag_overrides_environment(monkeypatch):
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")

    assert set_language("en") == "en"
    assert accept_language() == "en"
    assert set_language(None) == "zh"
    assert accept_language().startswith("zh-Hans")


def test_language_in_argv():
    assert language_in_argv(["--lang", "zh", "run"]) == "zh"
    assert language_in_argv(["check", "b.tar", "--lang=en"]) == "en"
    assert language_in_argv(["run", "--profile", "tiny"]) is None
    assert language_in_argv(["run", "--", "--lang", "zh"]) is None


@pytest.mark.parametrize("language, message, hint", [
    ("en", "run profile 'nosuch' not found", "  hint: use one of:"),
    ("zh", "找不到运行配置档 'nosuch'", "  建议：请使用以下之一："),
])
def test_unknown_profile(capsys, language, message, hint):
    assert main(["--lang", language, "run", "--profile", "nosuch"]) == EXIT_USAGE

    error = capsys.readouterr().err
    assert error.startswith("error[profile_not_found]: ")
    assert message in error
    assert hint in error


@pytest.mark.parametrize("language, message", [
    ("en", "bundle file not found: "),
    ("zh", "找不到结果包文件："),
])
def test_missing_bundle_file(tmp_path, capsys, language, message):
    missing = tmp_path / "absent.tar"

    code = main(["--lang", language, "upload", str(missing), "--portal", "http://127.0.0.1:9", "--token", "t"])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"error[bundle_not_found]: {message}{missing}" in error


@pytest.mark.parametrize("language, prefix, message, hint", [
    ("en", "bundle {path}: ", "file sha256 differs from manifest.json: ", "hint: the file was changed after packing"),
    ("zh", "结果包 {path}：", "文件 sha256 与 manifest.json 不符：", "建议：文件在打包后被修改过"),
])
def test_bundle_verify_failure(tmp_path, capsys, language, prefix, message, hint):
    arguments = make_bundles(tmp_path)
    vendor = Path(arguments[1])
    data = bytearray(vendor.read_bytes())
    position = data.index(b'"status"')  # a byte inside a member's content, not in a tar header
    data[position + 1] ^= 0x20
    vendor.write_bytes(bytes(data))

    code = main(["--lang", language, "verify", str(vendor), "--public-key", str(tmp_path / "vendor.pub")])

    error = capsys.readouterr().err
    assert code == EXIT_REJECTED
    assert f"error[file_digest_mismatch]: {prefix.format(path=vendor)}{message}" in error
    # The value names the file and both digests, with no English words inside the Chinese sentence.
    assert "(manifest.json: " in error
    assert "expected" not in error
    assert hint in error


def test_check_header_in_chinese(tmp_path, capsys):
    main(make_bundles(tmp_path) + ["--lang", "zh"])

    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("规则包: ")
    assert "参考: " in header
    assert "reference:" not in header


def test_locale_chooses_chinese_in_new_process(tmp_path):
    environment = {**os.environ, "LANG": "zh_CN.UTF-8"}
    environment.pop("LC_ALL", None)
    environment.pop("LC_MESSAGES", None)

    result = subprocess.run([sys.executable, "-m", "agent", "run", "--profile", "nosuch"], cwd=REPOSITORY,
                            env=environment, capture_output=True, text=True, timeout=120)

    assert result.returncode == EXIT_USAGE
    assert "error[profile_not_found]: 在 " in result.stderr
    assert "建议：" in result.stderr


def read_po(path: Path) -> dict[str, str]:
    """Return msgid -> msgstr of a .po file, joining continued lines; the header entry is left out."""
    entries: dict[str, str] = {}
    field, values = None, {"msgid": "", "msgstr": ""}

    def finish():
        if field == "msgstr" and values["msgid"]:
            entries[values["msgid"]] = values["msgstr"]

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("msgid "):
            finish()
            field, values = "msgid", {"msgid": "", "msgstr": ""}
            values["msgid"] = ast.literal_eval(line[len("msgid "):])
        elif line.startswith("msgstr "):
            field = "msgstr"
            values["msgstr"] = ast.literal_eval(line[len("msgstr "):])
        elif line.startswith('"') and field:
            values[field] += ast.literal_eval(line)
    finish()
    return entries


def source_messages() -> set[str]:
    """Return every string literal passed to _() or N_() in agent/, and the core's error table sentences and hints."""
    messages: set[str] = set()
    for path in (REPOSITORY / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_")
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                messages.add(node.args[0].value)
    for table in (BUNDLE_ERRORS, TICKET_ERRORS):
        for templates, hint in table.values():
            messages.update((templates,) if isinstance(templates, str) else templates)
            messages.add(hint)
    return messages


def test_every_message_has_chinese():
    translations = read_po(PO_FILE)
    messages = source_messages()

    untranslated = sorted(message for message in messages if not translations.get(message))

    assert len(messages) > 200
    assert untranslated == [], "add these to agent.po with scripts/agent_messages.sh and write their Chinese"


def untranslated_log_calls() -> list[str]:
    """Return `path:line` of each logger call at info level or above in agent/ whose message is a bare string, not `_()` or `ngettext()`."""
    found = []
    for path in sorted((REPOSITORY / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "logger" and node.func.attr in ("info", "warning", "error", "exception", "critical")):
                continue
            message = node.args[0] if node.args else None
            if isinstance(message, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                found.append(f"{path.relative_to(REPOSITORY)}:{node.lineno}")
    return found


def test_log_lines_go_through_catalogue():
    # Debug lines stay English, because only --verbose shows them and they are meant for developers.
    assert untranslated_log_calls() == [], "wrap these log messages in _() with named placeholders"


def test_compiled_catalogue_matches_po():
    compiled = gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=["zh_CN"])
    translations = read_po(PO_FILE)

    stale = sorted(message for message, text in translations.items() if compiled.gettext(message) != text)

    assert stale == [], "recompile agent.mo with scripts/agent_messages.sh compile"


def test_chinese_keeps_placeholders():
    for message, text in read_po(PO_FILE).items():
        names = {field for field in _placeholders(message)}
        assert {field for field in _placeholders(text)} == names, message


def _placeholders(text: str) -> set[str]:
    import string

    return {name for _literal, name, _spec, _conversion in string.Formatter().parse(text) if name is not None}


@pytest.fixture
def chinese():
    set_language("zh")
    yield
    set_language(None)


@pytest.mark.parametrize(("overrides", "message", "hint"), [
    ({"sharding_stage": 5}, "sharding_stage 必须是介于 0 和 3 之间的整数", "请把 sharding_stage 设为介于 0 和 3 之间的整数"),
    ({"per_device_train_batch_size": 0}, "per_device_train_batch_size 必须是正整数", "请把 per_device_train_batch_size 设为正整数"),
    ({"recompute": 1}, "recompute 必须是布尔值（true 或 false）", "请把 recompute 设为布尔值（true 或 false）"),
])
def test_chinese_rule_joins_without_space(chinese, overrides, message, hint):
    from agent.errors import AgentError
    from agent.runner.overrides import check_overrides
    from certification.rulepack import load_rule_pack

    with pytest.raises(AgentError) as error:
        check_overrides(load_rule_pack("tiny-2026.1"), ["pretrain-llama"], overrides)

    assert message in error.value.message
    assert hint in error.value.hint


def test_chinese_input_label_joins_without_space(chinese):
    from agent.i18n import _
    from agent.runner.checkpoints import describe_input

    missing = _("{label} is missing: no file at {path}").format(label=describe_input("dataset lambada"), path="/data/lambada.jsonl")
    checking = _("checking the digest of {label} at {path}").format(label=describe_input("tokenizer llama"), path="/data/tokenizer")

    assert missing == "缺少数据集 lambada：/data/lambada.jsonl 处没有文件"
    assert checking == "正在校验位于 /data/tokenizer 的分词器 llama 的摘要"


def test_no_space_before_chinese_value():
    """{label} and {rule} start with a Chinese word in Chinese, so a space before them splits the sentence."""
    import re

    slips = sorted(text for text in read_po(PO_FILE).values() if re.search(r"[\u4e00-\u9fff] \{(label|rule)\}", text))

    assert slips == []


def test_chinese_track_term_single():
    # The Chinese texts call a track 认证方向 (or 方向 after a track name), never 赛道.
    catalogues = [PO_FILE, REPOSITORY / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"]
    texts = {str(path): "\n".join(read_po(path).values()) for path in catalogues}
    sources = [REPOSITORY / "README.zh-CN.md", REPOSITORY / "certification" / "verdict_messages.py", REPOSITORY / "agent" / "report_html.py",
               *(REPOSITORY / "docs" / "zh-CN").glob("*.md"), *(REPOSITORY / "templates").rglob("*.html")]
    texts.update((str(path), path.read_text(encoding="utf-8")) for path in sources)

    assert [name for name, text in texts.items() if "赛道" in text] == []


def test_check_gap_in_chinese(tmp_path, capsys):
    main(make_bundles(tmp_path) + ["--lang", "zh"])

    output = capsys.readouterr().out
    # These bundles run level 1 only, so level 2 is blocked by the unplanned SD workloads, which are not gap entries.
    assert "    第 2 级需要本次运行未计划的工作负载：sd-sft-digits（配置 demo-sd）" in output
    for status, label in [("fail", "未通过"), ("refused", "无法比较"), ("pending", "待定")]:
        assert format_gap_item({"criterion": "sft.rouge", "status": status}, "zh") == f"sft.rouge ({label})"
    assert format_gap_item({"requires_track": "finetuning", "reached": 0}, "zh") == "调优 (级别 0)"


@pytest.mark.parametrize("text, chinese, english", [
    ("a: b: c\n", "YAML 无效，位于第 1 行第 5 列：此处不允许映射值", "invalid YAML at line 1, column 5: mapping values are not allowed here"),
    ("a:\n  b: 1\n c: 2\n", "YAML 无效，位于第 3 行第 2 列：此处应为块的结尾，但遇到了块映射的开头（解析块映射时，该结构从第 1 行第 1 列开始）",
     "invalid YAML at line 3, column 2: expected <block end>, but found '<block mapping start>' "
     "(while parsing a block mapping that starts at line 1, column 1)"),
    ("a: [1, 2\n", "YAML 无效，位于第 2 行第 1 列：此处应为',' 或 ']'，但遇到了文件结尾（解析流序列时，该结构从第 1 行第 4 列开始）",
     "invalid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence that starts at line 1, column 4)"),
    ("a:\tb\n", "YAML 无效，位于第 1 行第 3 列：字符 '\\t' 不能作为记号的开头（扫描下一个记号时）",
     "invalid YAML at line 1, column 3: found character '\\t' that cannot start any token (while scanning for the next token)"),
    ("a: !foo 1\n", "YAML 无效，位于第 1 行第 4 列：不支持标签 '!foo'", "invalid YAML at line 1, column 4: could not determine a constructor for the tag '!foo'"),
    # A problem without a translation: Chinese names only the position.
    ("a: 1\n---\nb: 2\n", "YAML 无效，位于第 2 行第 1 列",
     "invalid YAML at line 2, column 1: but found another document (expected a single document in the stream that starts at line 1, column 1)"),
], ids=["mapping_value", "block_end", "flow_sequence", "tab", "tag", "untranslated"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_validate_pack_yaml_error(tmp_path, capsys, text, chinese, english, language):
    path = tmp_path / "broken-2026.1.yaml"
    path.write_text(text, encoding="utf-8")

    code = main(["--lang", language, "validate-pack", str(path)])

    output = capsys.readouterr().out
    assert code == EXIT_REJECTED
    expected = f"（文件）: {chinese}" if language == "zh" else f"(file): {english}"
    assert output.splitlines()[0] == f"{path}: {expected}"


@pytest.mark.parametrize("language, expected", [
    ("zh", "error[rule_pack_invalid]: 规则包 {path}：YAML 无效，位于第 1 行第 5 列：此处不允许映射值\n"),
    ("en", "error[rule_pack_invalid]: rule pack {path}: invalid YAML at line 1, column 5: mapping values are not allowed here\n"),
])
def test_check_rule_pack_yaml_error(tmp_path, capsys, language, expected):
    path = tmp_path / "broken-2026.1.yaml"
    path.write_text("a: b: c\n", encoding="utf-8")
    arguments = make_bundles(tmp_path)
    capsys.readouterr()

    code = main(["--lang", language] + arguments + ["--rule-pack", str(path)])

    assert code == EXIT_USAGE
    assert capsys.readouterr().err.startswith(expected.format(path=path))
