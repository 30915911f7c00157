"""`python -m agent upload` arguments that are rejected before any request is sent."""

import pytest

from agent.cli import main
from agent.errors import EXIT_USAGE

LOOPBACK = "http://127.0.0.1:9"


def upload(tmp_path, capsys, *options, language="en", content=b"") -> tuple[int, str]:
    """Run `agent upload` on a bundle file with `content` and `options`; return the exit code and stderr."""
    bundle = tmp_path / "run.bundle.tar"
    bundle.write_bytes(content)
    code = main(["--lang", language, "upload", str(bundle), *options])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("portal", ["notaurl", "cert.example.com", "ftp://cert.example.com", "http://", "https://[::1",
                                    "http://127.0.0.1:99999", "http://127.0.0.1:0", "http://cert.example.com:port"])
def test_portal_not_web_address(tmp_path, capsys, portal):
    code, error = upload(tmp_path, capsys, "--portal", portal, "--token", "t")

    assert code == EXIT_USAGE
    assert f"error[portal_url_invalid]: portal URL {portal!r} is not an http:// or https:// address with a host name and a port from 1 to 65535" in error
    assert "portal_unreachable" not in error


def test_portal_not_web_address_in_chinese(tmp_path, capsys):
    code, error = upload(tmp_path, capsys, "--portal", "notaurl", "--token", "t", language="zh")

    assert code == EXIT_USAGE
    assert "门户网址 'notaurl' 不是带主机名、端口在 1 到 65535 之间的 http:// 或 https:// 地址" in error


@pytest.mark.parametrize(("option", "value", "accepted"), [
    ("--chunk-mib", "0", "from 1 to 1024"), ("--chunk-mib", "-4", "from 1 to 1024"), ("--chunk-mib", "2048", "from 1 to 1024"),
    ("--retries", "-1", "from 0 to 100"), ("--retries", "101", "from 0 to 100"),
])
def test_upload_option_out_of_range(tmp_path, capsys, option, value, accepted):
    code, error = upload(tmp_path, capsys, "--portal", LOOPBACK, "--token", "t", option, value)

    assert code == EXIT_USAGE
    assert f"error[option_out_of_range]: {option} {value} is out of range" in error
    assert f"pass {option} with a whole number {accepted}" in error
    assert "portal_unreachable" not in error


def test_portal_url_with_password(tmp_path, capsys):
    code, error = upload(tmp_path, capsys, "--portal", "http://user:secret@127.0.0.1:9", "--token", "t")

    assert code == EXIT_USAGE
    assert "error[portal_url_credentials]: portal URL 'http://127.0.0.1:9' contains a user name or password" in error
    assert "secret" not in error


@pytest.mark.parametrize(("content", "code_name"), [(b"", "bundle_empty"), (b"not a tar archive" * 100, "bundle_not_archive")])
def test_bundle_checked_before_sending(tmp_path, capsys, content, code_name):
    bundle = tmp_path / "run.bundle.tar"
    bundle.write_bytes(content)

    code = main(["--lang", "en", "upload", str(bundle), "--portal", "http://127.0.0.1:9", "--token", "t"])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert f"error[{code_name}]: bundle file {bundle}" in error
    assert "portal_unreachable" not in error


def test_option_checked_before_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AGENT_PORTAL_TOKEN", raising=False)
    bundle = tmp_path / "run.bundle.tar"
    bundle.write_bytes(b"")

    code = main(["--lang", "en", "upload", str(bundle), "--portal", "http://127.0.0.1:9", "--chunk-mib", "0"])

    assert code == EXIT_USAGE
    assert "error[option_out_of_range]" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "1e400", "86401"])
def test_timeout_out_of_range(tmp_path, capsys, value):
    code, error = upload(tmp_path, capsys, "--portal", LOOPBACK, "--token", "t", "--timeout", value)

    assert code == EXIT_USAGE
    assert f"error[option_out_of_range]: --timeout {float(value)} is out of range" in error
    assert "pass --timeout with a number of seconds above 0 and at most 86400" in error


def test_timeout_out_of_range_in_chinese(tmp_path, capsys):
    code, error = upload(tmp_path, capsys, "--portal", LOOPBACK, "--token", "t", "--timeout", "nan", language="zh")

    assert code == EXIT_USAGE
    assert "--timeout nan 超出范围" in error
    assert "86400" in error
