"""Errors of the certification core and the summary labels of verify, bundle and upload, in Chinese and English."""

import argparse
import base64
import errno
import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from agent.cli import main
from agent.commands._fields import display_width
from agent.commands.upload import report
from agent.errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, from_coded_error, from_core_error
from agent.i18n import set_language
from certification.bundle import ENVELOPE_NAME, MANIFEST_NAME, build_manifest, open_bundle, sign_manifest
from certification.errors import BundleError, os_error_details
from certification.tickets import MAX_TICKET_BYTES, PAYLOAD_TYPE, new_claims
from certification.rulepack import RulePackError
from certification.signing import SigningError
from certification.verdict import VerdictInputError
from tests.certification.runfolder import build_run
from tests.certification.test_bundle import KEY, KEYRING, signed_members, write_canonical


@pytest.fixture(autouse=True)
def language_reset():
    yield
    set_language(None)


def write_bad_key(tmp_path):
    path = tmp_path / "bad.key"
    path.write_text("not a key\n", encoding="ascii")
    return path


def keygen_over_private_key(tmp_path):
    (tmp_path / "taken.key").write_text("old key\n", encoding="ascii")
    return ["keygen", "--out", str(tmp_path / "taken.key")]


@pytest.mark.parametrize("arguments, code, exit_code, chinese, english", [
    (lambda tmp: ["validate-pack", str(tmp / "absent-2026.1.yaml")], "rule_pack_unreadable", EXIT_USAGE,
     "无法读取 {tmp}/absent-2026.1.yaml：文件或文件夹不存在（ENOENT）", "cannot read {tmp}/absent-2026.1.yaml: no such file or folder (ENOENT)"),
    (keygen_over_private_key, "key_file_exists", EXIT_USAGE, "密钥文件 {tmp}/taken.key 已存在", "key file {tmp}/taken.key already exists"),
    (lambda tmp: ["verify", str(tmp / "x.tar"), "--public-key", str(write_bad_key(tmp))], "public_key_invalid", EXIT_REJECTED,
     "公钥文件 {tmp}/bad.key：内容不是 PEM 格式的公钥", "public key file {tmp}/bad.key: the text is not a PEM public key"),
    (lambda tmp: ["verify", str(tmp / "x.tar"), "--public-key", str(tmp / "absent.pub")], "key_file_unreadable", EXIT_USAGE,
     "无法读取密钥文件 {tmp}/absent.pub：文件或文件夹不存在（ENOENT）", "cannot read public key file {tmp}/absent.pub: no such file or folder (ENOENT)"),
    (lambda tmp: ["bundle", str(build_run(tmp / "run", workloads=(), planned=())), "--key", str(write_bad_key(tmp))], "key_invalid", EXIT_REJECTED,
     "{tmp}/bad.key 不是未加密的 PEM 私钥", "{tmp}/bad.key is not an unencrypted PEM private key"),
], ids=["rule_pack_unreadable", "key_file_exists", "public_key_invalid", "key_file_unreadable", "key_invalid"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_core_error_language(tmp_path, capsys, arguments, code, exit_code, chinese, english, language):
    result = main(["--lang", language] + arguments(tmp_path))

    error = capsys.readouterr().err
    expected = (chinese if language == "zh" else english).format(tmp=tmp_path)
    assert result == exit_code
    assert error.startswith(f"error[{code}]: {expected}")
    assert ("建议：" in error) == (language == "zh")


def test_rule_pack_error_values_translated():
    set_language("zh")
    error = RulePackError("rule_pack_not_found", "rule pack 'x' not found in /packs", "use one of: a, b",
                          {"name": "'x'", "folder": "/packs", "known": "a, b"})

    failure = from_coded_error(error)

    assert failure.code == "rule_pack_not_found"
    assert failure.message == "在 /packs 中找不到规则包 'x'"
    assert failure.hint == "请使用以下之一：a, b"
    assert failure.exit_code == EXIT_USAGE


def test_verdict_input_error_keeps_detail():
    set_language("zh")
    detail = "bundle b2 is for V2 M2, not V1 M1"
    error = VerdictInputError("bundles_of_different_cards", detail, "judge together only bundles of one vendor's card model")

    failure = from_coded_error(error)

    assert failure.message == f"这些结果包不属于同一型号的加速卡：{detail}"
    assert failure.hint == "只把同一厂商同一加速卡型号的结果包放在一起评判"


def test_missing_values_keep_english():
    set_language("zh")
    error = SigningError("key_invalid", "k.pem is not an unencrypted PEM private key", "create a key with `python -m agent keygen --out PATH`")

    failure = from_coded_error(error)

    assert failure.message == "k.pem is not an unencrypted PEM private key"
    assert failure.hint == "请用 `python -m agent keygen --out PATH` 生成密钥"


def test_unknown_code_keeps_english():
    set_language("zh")
    error = SigningError("key_new_kind", "a sentence the agent has no translation for", "a hint")

    failure = from_coded_error(error)

    assert failure.message == "a sentence the agent has no translation for"
    assert failure.hint == "a hint"


def aligned_fields(output: str) -> dict[str, str]:
    """Return label -> value of `label: value` lines, checking that every value starts in the same column."""
    fields, columns = {}, set()
    for line in output.splitlines():
        label, _separator, rest = line.partition(":")
        value = rest.lstrip(" ")
        fields[label] = value
        columns.add(display_width(label) + 1 + len(rest) - len(value))
    assert len(columns) == 1, output
    return fields


def test_bundle_and_verify_labels_in_chinese(tmp_path, capsys):
    key = tmp_path / "vendor.key"
    assert main(["keygen", "--out", str(key)]) == EXIT_OK
    run_dir = build_run(tmp_path / "run", workloads=("sft-llama",), planned=("sft-llama",))
    bundle = tmp_path / "run.tar"
    capsys.readouterr()

    assert main(["--lang", "zh", "bundle", str(run_dir), "--key", str(key), "--out", str(bundle)]) == EXIT_OK
    packed = aligned_fields(capsys.readouterr().out)
    assert main(["--lang", "zh", "verify", str(bundle), "--public-key", f"{key}.pub"]) == EXIT_OK
    verified = aligned_fields(capsys.readouterr().out)

    assert list(packed) == ["结果包", "结果包 ID", "密钥 ID", "sha256", "文件数"]
    assert packed["结果包"] == str(bundle)
    assert list(verified) == ["已验证", "结果包 ID", "密钥 ID", "签名时间", "规则包", "文件数", "工作负载", "运行票据"]
    assert verified["结果包 ID"] == packed["结果包 ID"]
    assert verified["工作负载"] == "sft-llama"
    assert verified["运行票据"] == "无"


def test_verify_labels_in_english(tmp_path, capsys):
    key = tmp_path / "vendor.key"
    assert main(["keygen", "--out", str(key)]) == EXIT_OK
    bundle = tmp_path / "run.tar"
    assert main(["bundle", str(build_run(tmp_path / "run", workloads=(), planned=())), "--key", str(key), "--out", str(bundle)]) == EXIT_OK
    capsys.readouterr()

    assert main(["--lang", "en", "verify", str(bundle), "--public-key", f"{key}.pub"]) == EXIT_OK

    fields = aligned_fields(capsys.readouterr().out)
    assert list(fields) == ["verified", "bundle id", "key id", "signed at", "rule pack", "files", "workloads", "ticket"]
    assert fields["ticket"] == "none"


@pytest.mark.parametrize("language, expected", [
    ("zh", {"提交": "7（已接收）", "网址": "http://127.0.0.1:9/submissions/7/"}),
    ("en", {"submission": "7 (received)", "url": "http://127.0.0.1:9/submissions/7/"}),
])
def test_upload_labels(capsys, language, expected):
    set_language(language)
    body = {"id": 7, "state": "received", "url": "http://127.0.0.1:9/submissions/7/"}

    assert report(body, False, argparse.Namespace(json=False)) == EXIT_OK

    lines = capsys.readouterr().out.splitlines()
    assert aligned_fields("\n".join(lines[:2])) == expected


def test_run_unknown_rule_pack_in_chinese(tmp_path, capsys):
    profile = tmp_path / "profile.yaml"
    profile.write_text("rule_pack: nosuch-2026.1\ntracks: [pretraining]\nlevel: 1\ndevice: cpu\n"
                       "vendor: V\ncard:\n  model: M\n  serial: S\n", encoding="utf-8")

    code = main(["--lang", "zh", "run", "--profile", str(profile), "--out", str(tmp_path / "run")])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert error.startswith("error[rule_pack_not_found]: 在 ")
    assert "中找不到规则包 'nosuch-2026.1'" in error
    assert "建议：请使用以下之一：demo-2026.1, " in error


@pytest.mark.parametrize("language, expected", [
    ("zh", "受信任的 Ed25519 公钥（.pub）文件；有多个密钥时重复此选项"),
    ("en", "trusted Ed25519 public key (.pub) file; repeat the option"),
])
def test_option_help_language(capsys, language, expected):
    with pytest.raises(SystemExit) as exit:
        main(["--lang", language, "verify", "--help"])

    output = capsys.readouterr().out
    assert exit.value.code == 0
    # argparse wraps the help text at any width, so the comparison ignores whitespace.
    assert "".join(expected.split()) in "".join(output.split())


def break_file(name: str, text: str):
    def arguments(tmp):
        run_dir = build_run(tmp / "run", workloads=(), planned=())
        (run_dir / name).write_text(text, encoding="utf-8")
        key = tmp / "vendor.key"
        assert main(["keygen", "--out", str(key)]) == EXIT_OK
        return ["bundle", str(run_dir), "--key", str(key)]

    return arguments


@pytest.mark.parametrize("arguments, code, chinese, english", [
    (break_file("environment.json", "{"), "json_invalid",
     "environment.json 第 1 行第 2 列的 JSON 无效：此处应为双引号括起的属性名",
     "invalid JSON in environment.json at line 1, column 2: Expecting property name enclosed in double quotes"),
    (break_file("run.json", '{"run_id": '), "json_invalid",
     "run.json 第 1 行第 12 列的 JSON 无效：此处应为一个值", "invalid JSON in run.json at line 1, column 12: Expecting value"),
    (break_file("run.json", '{"run_id": "x"}'), "run_json_invalid",
     "run.json 无效：$.started_at 缺失或类型错误", "run.json is invalid: $.started_at is missing or has the wrong type"),
    (break_file("events.jsonl", '{"event": "start"}\n{"loss": NaN}\n'), "json_non_finite",
     "events.jsonl 第 2 行有未加引号的 NaN 或 Infinity", "bare NaN or Infinity token in events.jsonl at line 2"),
], ids=["json_invalid", "run_json_syntax", "run_json_invalid", "json_non_finite"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_bundle_json_error_language(tmp_path, capsys, arguments, code, chinese, english, language):
    command = arguments(tmp_path)
    capsys.readouterr()

    result = main(["--lang", language] + command)

    first_line = capsys.readouterr().err.splitlines()[0]
    assert result == EXIT_REJECTED
    assert first_line == f"error[{code}]: {chinese if language == 'zh' else english}"


def test_unknown_json_problem_left_out_in_chinese():
    error = BundleError("json_invalid", "a.json", line=3, column=7, problem="Invalid control character '\\x01' at")

    set_language("zh")
    chinese = from_core_error(error, EXIT_REJECTED)
    set_language("en")
    english = from_core_error(error, EXIT_REJECTED)

    assert chinese.message == "a.json 第 3 行第 7 列的 JSON 无效"
    assert english.message == "invalid JSON in a.json at line 3, column 7: Invalid control character '\\x01' at"


def rejection_in_both_languages(path):
    """Open the bundle at `path`, which must be rejected, and return the error with its message in Chinese and in English."""
    with pytest.raises(BundleError) as caught:
        open_bundle(path, KEYRING)

    set_language("zh")
    in_chinese = from_core_error(caught.value, EXIT_REJECTED)
    set_language("en")
    in_english = from_core_error(caught.value, EXIT_REJECTED)
    return caught.value, in_chinese, in_english


@pytest.mark.parametrize("edit, chinese, english", [
    (lambda manifest: manifest["files"][0].update(size=-1),
     "manifest.json 在 files/0/size 处无效：-1 小于最小值 0", "manifest.json is invalid at files/0/size: -1 is less than the minimum of 0"),
    (lambda manifest: manifest.update(extra=1),
     "manifest.json 在（顶层）处无效：模式不允许此处出现这些键：extra",
     "manifest.json is invalid at (top level): Additional properties are not allowed ('extra' was unexpected)"),
], ids=["minimum", "additional_properties"])
def test_manifest_schema_error_in_language(tmp_path, edit, chinese, english):
    path = write_canonical(tmp_path / "bundle.tar", signed_members({"run.json": b"[]"}, manifest_edit=edit))
    _, in_chinese, in_english = rejection_in_both_languages(path)

    assert in_chinese.code == "manifest_invalid"
    assert in_chinese.message == chinese
    assert in_english.message == english


def signed_raw_manifest(manifest_bytes: bytes) -> list[tuple[str, bytes]]:
    """Return the members of a bundle whose manifest.json is `manifest_bytes`, with a valid signature over those bytes."""
    run = {"run_id": "r", "started_at": "2026-01-01T00:00:00Z", "rule_pack": {"name": "demo-2026.1", "sha256": "0" * 64}}
    manifest = build_manifest(run, [])
    return [(MANIFEST_NAME, manifest_bytes), (ENVELOPE_NAME, sign_manifest(manifest, manifest_bytes, KEY))]


@pytest.mark.parametrize("manifest_bytes, chinese, english", [
    (b'{"files": [}\n', "manifest.json 第 1 行第 12 列的 JSON 无效：此处应为一个值",
     "manifest.json is not valid JSON at line 1, column 12: Expecting value"),
    (b'{\n  "files": [],\n  "size": "\xff"\n}\n', "manifest.json 第 3 行第 12 列的 JSON 无效：不是 UTF-8 文本",
     "manifest.json is not valid JSON at line 3, column 12: not UTF-8 text"),
    (b'{"files": [], "a": "\x01"}', "manifest.json 第 1 行第 21 列的 JSON 无效：此处有无效的控制字符",
     "manifest.json is not valid JSON at line 1, column 21: Invalid control character at"),
    (b'{"files": [], "size": NaN}', "manifest.json 中有未加引号的 NaN，JSON 不允许这样写",
     "manifest.json contains a bare NaN token, which JSON does not allow"),
], ids=["syntax", "not_utf8", "control_character", "nan"])
def test_manifest_json_error_in_language(tmp_path, manifest_bytes, chinese, english):
    path = write_canonical(tmp_path / "bundle.tar", signed_raw_manifest(manifest_bytes))
    caught, in_chinese, in_english = rejection_in_both_languages(path)

    assert caught.code == "manifest_invalid"
    assert in_chinese.message == chinese
    assert in_english.message == english


def test_manifest_unknown_json_problem_left_out_in_chinese():
    error = BundleError("manifest_invalid", "a problem: line 2 column 4 (char 9)", line=2, column=4, problem="a problem")

    set_language("zh")

    assert from_core_error(error, EXIT_REJECTED).message == "manifest.json 第 2 行第 4 列的 JSON 无效"


@pytest.mark.parametrize("path, chinese, english", [
    ("../outside.txt", "manifest.json 在 files/1/path 处无效：归档成员路径含有 '..'：../outside.txt",
     "manifest.json is invalid at files/1/path: archive member path contains '..': ../outside.txt"),
    ("/etc/passwd", "manifest.json 在 files/1/path 处无效：归档成员使用了绝对路径：/etc/passwd",
     "manifest.json is invalid at files/1/path: archive member has an absolute path: /etc/passwd"),
    ("RUN.JSON", "manifest.json 在 files/1/path 处无效：忽略大小写并做 Unicode NFC 规范化后，有两个归档成员路径相同：'run.json' / 'RUN.JSON'",
     "manifest.json is invalid at files/1/path: two archive members have the same path after case folding and Unicode NFC: 'run.json' / 'RUN.JSON'"),
], ids=["parent", "absolute", "duplicate"])
def test_manifest_path_error_in_language(tmp_path, path, chinese, english):
    def add_entry(manifest):
        manifest["files"].append({"path": path, "size": 1, "sha256": "0" * 64})

    bundle = write_canonical(tmp_path / "bundle.tar", signed_members({"run.json": b"[]"}, manifest_edit=add_entry))
    caught, in_chinese, in_english = rejection_in_both_languages(bundle)

    assert caught.code == "manifest_invalid"
    assert caught.details["path_code"] in ("path_parent", "path_absolute", "path_duplicate")
    assert in_chinese.message == chinese
    assert in_english.message == english


def test_subject_digest_mismatch_in_chinese():
    set_language("zh")

    failure = from_core_error(BundleError("subject_digest_mismatch", "aaaa / bbbb"), EXIT_REJECTED)

    assert failure.message == "manifest.json 与签名的摘要不符（签名中的 sha256 / 实际的 sha256）：aaaa / bbbb"


@pytest.mark.parametrize("number, chinese, english", [
    (errno.ENOENT, "文件或文件夹不存在（ENOENT）", "no such file or folder (ENOENT)"),
    (errno.EACCES, "权限不足（EACCES）", "permission denied (EACCES)"),
    (errno.EPERM, "不允许该操作（EPERM）", "operation not permitted (EPERM)"),
    (errno.EISDIR, "该路径是文件夹，不是文件（EISDIR）", "the path is a folder, not a file (EISDIR)"),
    (errno.ENOTDIR, "路径中的某一部分不是文件夹（ENOTDIR）", "a part of the path is not a folder (ENOTDIR)"),
    (errno.ENOSPC, "设备上没有剩余空间（ENOSPC）", "no space left on the device (ENOSPC)"),
    (errno.EROFS, "文件系统为只读（EROFS）", "the file system is read-only (EROFS)"),
    (errno.ELOOP, "符号链接层数过多（ELOOP）", "too many levels of symbolic links (ELOOP)"),
    (errno.ENAMETOOLONG, "文件名过长（ENAMETOOLONG）", "the file name is too long (ENAMETOOLONG)"),
    (errno.EIO, "设备输入/输出错误（EIO）", "input/output error of the device (EIO)"),
    (errno.ENOSYS, "ENOSYS", f"{os.strerror(errno.ENOSYS)} (ENOSYS)"),
], ids=lambda value: errno.errorcode[value] if isinstance(value, int) else None)
def test_os_error_reason_language(number, chinese, english):
    error = BundleError("archive_unreadable", "b.tar", **os_error_details(OSError(number, os.strerror(number))))

    set_language("zh")
    chinese_error = from_core_error(error)
    set_language("en")
    english_error = from_core_error(error)

    assert chinese_error.message == f"无法读取结果包文件 b.tar：{chinese}"
    assert english_error.message == f"cannot read bundle file b.tar: {english}"


@pytest.mark.parametrize("language, expected", [
    ("zh", "error[key_file_unwritable]: 无法写入 {path}：文件或文件夹不存在（ENOENT）"),
    ("en", "error[key_file_unwritable]: cannot write {path}: no such file or folder (ENOENT)"),
])
def test_agent_os_error_language(tmp_path, capsys, language, expected):
    path = tmp_path / "absent" / "vendor.key"

    result = main(["--lang", language, "keygen", "--out", str(path)])

    assert result == EXIT_USAGE
    assert capsys.readouterr().err.startswith(expected.format(path=path))


@pytest.mark.parametrize("content, chinese, english", [
    (b"x" * 100, "字节偏移 0 处头部被截断", "truncated header at byte offset 0"),
    (b"x" + bytes(1023), "字节偏移 0 处校验和错误", "bad checksum at byte offset 0"),
], ids=["truncated_header", "bad_checksum"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_archive_invalid_language(tmp_path, capsys, content, chinese, english, language):
    assert main(["keygen", "--out", str(tmp_path / "vendor.key")]) == EXIT_OK
    path = tmp_path / "bundle.tar"
    path.write_bytes(content)
    capsys.readouterr()

    result = main(["--lang", language, "verify", str(path), "--public-key", str(tmp_path / "vendor.key.pub")])

    error = capsys.readouterr().err
    assert result == EXIT_REJECTED
    if language == "zh":
        assert error.startswith(f"error[archive_invalid]: 结果包 {path}：结果包不是有效的未压缩 tar 归档：{chinese}\n")
    else:
        assert error.startswith(f"error[archive_invalid]: bundle {path}: the bundle is not a valid uncompressed tar archive: {english}\n")


def test_unknown_tar_problem_left_out_in_chinese():
    set_language("zh")

    failure = from_core_error(BundleError("archive_invalid", "invalid base-256 field", offset=1536, problem="invalid base-256 field"))

    assert failure.message == "结果包不是有效的未压缩 tar 归档：在字节偏移 1536 处读取失败"


def ticket_file(text):
    def write(tmp):
        path = tmp / "ticket.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return path

    return write


def envelope_text(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> str:
    """Return an unsigned ticket envelope over `payload`; these tests fail before the signature is checked."""
    return json.dumps({"payload": base64.b64encode(payload).decode("ascii"), "payloadType": payload_type, "signatures": []})


def claims_text(**changes) -> bytes:
    claims = new_claims(vendor="acme", card_model="X1", card_serial="SN-1", track="finetuning", level=1,
                        rule_pack={"name": "p-1", "sha256": "0" * 64}, issued_at=datetime.now(timezone.utc), lifetime=timedelta(days=1))
    return json.dumps({**claims, **changes}).encode("utf-8")


@pytest.mark.parametrize("write, chinese, english", [
    (lambda tmp: tmp / "absent.json", "error[ticket_unreadable]: 无法读取票据文件 {path}：文件或文件夹不存在（ENOENT）",
     "error[ticket_unreadable]: cannot read ticket file {path}: no such file or folder (ENOENT)"),
    (ticket_file("{bad"), "error[ticket_invalid]: 运行票据不是有效的签名票据：{path} 第 1 行第 2 列的 JSON 无效：此处应为双引号括起的属性名",
     "error[ticket_invalid]: the run ticket is not a valid signed ticket: invalid JSON in {path} at line 1, column 2: "
     "Expecting property name enclosed in double quotes"),
    (ticket_file(b" " * (MAX_TICKET_BYTES + 1)), f"error[ticket_invalid]: 运行票据不是有效的签名票据：{{path}} 超过 {MAX_TICKET_BYTES} 字节",
     f"error[ticket_invalid]: the run ticket is not a valid signed ticket: {{path}} is larger than {MAX_TICKET_BYTES} bytes"),
    (ticket_file('{"payload": 1}'), "error[ticket_invalid]: 运行票据不是 DSSE 信封：$.payload 缺失或无效",
     "error[ticket_invalid]: the run ticket is not a DSSE envelope: $.payload is missing or invalid"),
    (ticket_file('{"payload": "!!", "payloadType": "x", "signatures": []}'), "error[ticket_invalid]: 运行票据不是 DSSE 信封：$.payload 缺失或无效",
     "error[ticket_invalid]: the run ticket is not a DSSE envelope: $.payload is missing or invalid"),
    (ticket_file(envelope_text(b"{}", "text/plain")), f"error[ticket_invalid]: 运行票据的载荷类型是 text/plain，而不是 {PAYLOAD_TYPE}",
     f"error[ticket_invalid]: the run ticket has the payload type text/plain, not {PAYLOAD_TYPE}"),
    (ticket_file(envelope_text(b"[")), "error[ticket_invalid]: 运行票据不是有效的签名票据：payload 第 1 行第 2 列的 JSON 无效：此处应为一个值",
     "error[ticket_invalid]: the run ticket is not a valid signed ticket: invalid JSON in payload at line 1, column 2: Expecting value"),
    (ticket_file(envelope_text(b"{}")), "error[ticket_invalid]: 运行票据缺少声明 $.ticket_version",
     "error[ticket_invalid]: the run ticket has no claim $.ticket_version"),
    (ticket_file(envelope_text(claims_text(level=0))), "error[ticket_invalid]: 运行票据的声明 $.level 不满足模式关键字 minimum：1",
     "error[ticket_invalid]: the run ticket's claim $.level does not meet the schema keyword minimum: 1"),
    (ticket_file(envelope_text(claims_text(issued_at="yesterday"))),
     "error[ticket_invalid]: 运行票据的声明 $.issued_at 不是带时区的 ISO 8601 时间：yesterday",
     "error[ticket_invalid]: the run ticket's claim $.issued_at is not an ISO 8601 time with a time zone: yesterday"),
], ids=["unreadable", "not_json", "too_large", "envelope_field", "not_base64", "payload_type", "payload_not_json",
        "claim_missing", "claim_schema", "claim_time"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_run_ticket_error_language(tmp_path, capsys, write, chinese, english, language):
    path = write(tmp_path)

    result = main(["--lang", language, "run", "--profile", "smoke", "--out", str(tmp_path / "run"), "--ticket", str(path)])

    first_line = capsys.readouterr().err.splitlines()[0]
    assert result == EXIT_USAGE
    assert first_line == (chinese if language == "zh" else english).format(path=path)
