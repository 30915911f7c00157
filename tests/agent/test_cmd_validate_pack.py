"""`python -m agent validate-pack` on files that are not rule packs, and on a renamed pack."""

import pytest
import yaml

from agent.cli import main
from agent.errors import EXIT_REJECTED, EXIT_USAGE
from certification.rulepack import RULEPACK_DIR
from tests.agent.test_cmd_check_validate import make_bundles


@pytest.mark.parametrize("content, expected", [
    (b"hello world\nthis is a note, not a pack\n",
     "(file): the file parses as YAML, but its top level is a string, not a mapping"),
    (b"# title\n\n- first\n- second\n", "(file): the file parses as YAML, but its top level is a list, not a mapping"),
    (b"# only a comment\n", "(file): the file is empty or only comments"),
    (b"id: demo\nversion: [2026\n",
     "(file): invalid YAML at line 3, column 1: expected ',' or ']', but got '<stream end>' "
     "(while parsing a flow sequence that starts at line 2, column 10)"),
    (b"id: demo\n  version: 1\n", "(file): invalid YAML at line 2, column 10: mapping values are not allowed here"),
    (b"id: d\xe9mo\n", "(file): not UTF-8 text: byte 0xe9 at offset 5 is invalid; save the file as UTF-8"),
])
def test_not_a_pack(tmp_path, capsys, content, expected):
    path = tmp_path / "notes-2026.1.yaml"
    path.write_bytes(content)

    code = main(["--lang", "en", "validate-pack", str(path)])

    output = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert len(output.out.splitlines()) == 1
    assert output.out.startswith(f"{path}: {expected}")
    assert f"error[rule_pack_invalid]: 1 problem in {path}" in output.err


def test_renamed_pack_lists_every_problem(tmp_path, capsys):
    path = tmp_path / "my-pack.yaml"
    path.write_text((RULEPACK_DIR / "demo-2026.1.yaml").read_text(encoding="utf-8").replace("schema: 1", "schema: 2"), encoding="utf-8")

    code = main(["--lang", "en", "validate-pack", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_REJECTED
    assert f"{path}: (file name): the file is named my-pack.yaml, but its id and version make the pack demo-2026.1; " \
           "rename the file to demo-2026.1.yaml, or change id and version" in lines
    assert any(line.startswith(f"{path}: schema: ") for line in lines)
    assert any(line.startswith(f"{path}: (file): published pack demo-2026.1 is pinned at sha256 ") for line in lines)
    assert len(lines) == 3


def test_check_rejects_non_yaml_pack(tmp_path, capsys):
    pack = tmp_path / "pack.yaml"
    pack.write_text("id: demo\n  version: 1\n", encoding="utf-8")

    code = main(make_bundles(tmp_path) + ["--lang", "en", "--rule-pack", str(pack)])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"error[rule_pack_invalid]: rule pack {pack}: invalid YAML at line 2, column 10: mapping values are not allowed here" in error


def test_problems_in_chinese(tmp_path, capsys):
    text = tmp_path / "notes-2026.1.yaml"
    text.write_text("hello world\n", encoding="utf-8")
    renamed = tmp_path / "my-pack.yaml"
    renamed.write_text((RULEPACK_DIR / "demo-2026.1.yaml").read_text(encoding="utf-8").replace("schema: 1", "schema: 2"), encoding="utf-8")

    main(["--lang", "zh", "validate-pack", str(text)])
    text_lines = capsys.readouterr().out.splitlines()
    main(["--lang", "zh", "validate-pack", str(renamed)])
    renamed_lines = capsys.readouterr().out.splitlines()

    assert text_lines == [f"{text}: （文件）: 文件可以按 YAML 解析，但其顶层是字符串，不是映射；"
                          "规则包是一个 YAML 映射，包含 schema、id、version、status、tracks 等键"]
    assert f"{renamed}: （文件名）: 文件名为 my-pack.yaml，但按其 id 和 version，规则包应为 demo-2026.1；" \
           "请把文件改名为 demo-2026.1.yaml，或修改 id 和 version" in renamed_lines
    assert any(line.startswith(f"{renamed}: （文件）: 已发布的规则包 demo-2026.1 固定为 sha256 ") for line in renamed_lines)
    assert f"{renamed}: schema: 应为 1，而不是 2" in renamed_lines


@pytest.mark.parametrize("language, label", [("en", "(top level)"), ("zh", "（顶层）")])
def test_top_level_label_in_language(tmp_path, capsys, language, label):
    path = write_demo_pack(tmp_path, ("status: published\n", ""))

    code = main(["--lang", language, "validate-pack", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_REJECTED
    assert any(line.startswith(f"{path}: {label}: ") for line in lines), lines


def test_lang_after_command(tmp_path, capsys):
    path = tmp_path / "notes-2026.1.yaml"
    path.write_text("hello world\n", encoding="utf-8")

    code = main(["validate-pack", "--lang", "zh", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_REJECTED
    assert lines[0].startswith(f"{path}: （文件）: 文件可以按 YAML 解析")


def write_demo_pack(tmp_path, *replacements):
    """Write the demo pack under its own name with each (old, new) text replaced once."""
    text = (RULEPACK_DIR / "demo-2026.1.yaml").read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "demo-2026.1.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("language, expected", [
    ("en", ["status: 'wobbly' is not one of ['draft', 'published', 'withdrawn']",
            "settings/loss_alignment/window: 'lots' is not of type 'integer'",
            "settings/loss_alignment/steps: -5 is less than the minimum of 1"]),
    ("zh", ['status: "wobbly" 不是以下取值之一："draft", "published", "withdrawn"',
            'settings/loss_alignment/window: "lots" 的类型是 string，但必须是 integer',
            "settings/loss_alignment/steps: -5 小于最小值 1"]),
])
def test_schema_problems_in_language(tmp_path, capsys, language, expected):
    path = write_demo_pack(tmp_path, ("status: published", "status: wobbly"), ("window: 20", "window: lots"), ("steps: 200", "steps: -5"))

    code = main(["--lang", language, "validate-pack", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_REJECTED
    for line in expected:
        assert f"{path}: {line}" in lines


@pytest.mark.parametrize("language, expected", [
    ("en", "settings/loss_alignment/window: {'size': 20} is not of type 'integer'"),
    ("zh", "settings/loss_alignment/window: 该值的类型是 object，但必须是 integer"),
])
def test_mapping_value_not_echoed(tmp_path, capsys, language, expected):
    path = write_demo_pack(tmp_path, ("window: 20", "window: {size: 20}"))

    code = main(["--lang", language, "validate-pack", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_REJECTED
    assert f"{path}: {expected}" in lines


@pytest.mark.parametrize("language, expected", [
    ("en", ["workloads/sft-llama/model: unknown model 'gpt-5'",
            "workloads/pretrain-llama/datasets/validation: a pretrain workload reads a validation dataset: name one here"]),
    ("zh", ["workloads/sft-llama/model: 未知模型 gpt-5：请在 models 下定义它",
            "workloads/pretrain-llama/datasets/validation: pretrain 工作负载要读取 validation 数据集：请在此处指定一个"]),
])
def test_reference_problems_in_language(tmp_path, capsys, language, expected):
    pack = yaml.safe_load((RULEPACK_DIR / "demo-2026.1.yaml").read_text(encoding="utf-8"))
    pack["status"] = "draft"
    pack["workloads"]["sft-llama"]["model"] = "gpt-5"
    del pack["workloads"]["pretrain-llama"]["datasets"]["validation"]
    path = tmp_path / "demo-2026.1.yaml"
    path.write_text(yaml.safe_dump(pack, allow_unicode=True), encoding="utf-8")

    code = main(["--lang", language, "validate-pack", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_REJECTED
    for line in expected:
        assert f"{path}: {line}" in lines


# A PEM private key block like the one `python -m agent keygen` writes; the body is made up for this test.
PRIVATE_KEY = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIDmLrBRl2Ns+Y6j2JHAlK6yQwLffG3dWKj2X2XhQeeGZ
-----END PRIVATE KEY-----
"""


@pytest.mark.parametrize("language, expected", [
    ("en", "(file): the file looks like a PEM key or certificate, not a rule pack"),
    ("zh", "（文件）: 该文件看起来是 PEM 密钥或证书，不是规则包"),
])
def test_key_file_not_echoed(tmp_path, capsys, language, expected):
    path = tmp_path / "vendor.key"
    path.write_bytes(PRIVATE_KEY)

    code = main(["--lang", language, "validate-pack", str(path)])

    output = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert output.out.startswith(f"{path}: {expected}")
    for line in PRIVATE_KEY.decode().splitlines():
        assert line not in output.out + output.err
    assert "MC4C" not in output.out + output.err


def test_secret_text_not_echoed(tmp_path, capsys):
    path = tmp_path / "token.txt"
    path.write_text("ghp_0123456789abcdefSECRET\n", encoding="utf-8")

    code = main(["--lang", "en", "validate-pack", str(path)])

    output = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert "ghp_" not in output.out + output.err


@pytest.mark.parametrize("language, expected", [
    ("en", ["settings/loss_alignment/window: 'lots' is not of type 'integer'",
            "workloads/sft-llama/model: unknown model 'gpt-5'"]),
    ("zh", ['settings/loss_alignment/window: "lots" 的类型是 string，但必须是 integer',
            "workloads/sft-llama/model: 未知模型 gpt-5：请在 models 下定义它"]),
])
def test_schema_and_reference_problems_in_one_pass(tmp_path, capsys, language, expected):
    path = write_demo_pack(tmp_path, ("window: 20", "window: lots"), ("kind: sft\n    model: llama-tiny", "kind: sft\n    model: gpt-5"))

    code = main(["--lang", language, "validate-pack", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_REJECTED
    for line in expected:
        assert f"{path}: {line}" in lines


def write_draft_pack(tmp_path, *replacements):
    """Write the demo pack as the unpublished draft demo-2026.9, with each (old, new) text replaced once."""
    path = write_demo_pack(tmp_path, ('version: "2026.1"\nstatus: published', 'version: "2026.9"\nstatus: draft'), *replacements)
    return path.rename(tmp_path / "demo-2026.9.yaml")


@pytest.mark.parametrize("language, expected", [
    ("en", ["tracks/finetuning/levels: track 'finetuning' defines levels 1, 3 but not level 2; define every level from 1 to 3",
            "workloads/sft-llama/init_from: workload 'sft-llama' starts from itself through init_from: sft-llama -> sft-llama"]),
    ("zh", ["tracks/finetuning/levels: 认证方向 finetuning 定义了级别 1, 3，但没有级别 2；请定义从 1 到 3 的每个级别",
            "workloads/sft-llama/init_from: 工作负载 sft-llama 通过 init_from 从自身开始：sft-llama -> sft-llama"]),
])
def test_plan_problems_rejected(tmp_path, capsys, language, expected):
    path = write_draft_pack(tmp_path, ("init_from: pretrain-llama", "init_from: sft-llama"),
                            ("      2:\n        workloads: [sd-sft-digits]", "      3:\n        workloads: [sd-sft-digits]"))

    code = main(["--lang", language, "validate-pack", str(path)])

    output = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert output.out.splitlines() == [f"{path}: {line}" for line in expected]
    assert "error[rule_pack_invalid]" in output.err


def test_draft_copy_of_demo_pack_valid(tmp_path, capsys):
    path = write_draft_pack(tmp_path)

    code = main(["--lang", "en", "validate-pack", str(path)])

    assert code == 0, capsys.readouterr()
