"""`python -m agent upload` requests the agent's language from the portal, so that a refusal reads in one language."""

import pytest

from agent.cli import main
from agent.errors import EXIT_REMOTE

from .conftest import tar_bytes


@pytest.fixture
def bundle_file(tmp_path):
    path = tmp_path / "run.bundle.tar"
    path.write_bytes(tar_bytes())
    return path


@pytest.mark.parametrize("language, agent_words, portal_words", [
    ("en", "the portal rejected the upload with HTTP 401 [authentication_failed]: ", "Invalid token."),
    ("zh", "门户拒绝了上传，HTTP 401 [authentication_failed]：", "认证令牌无效。"),
])
def test_refusal_in_one_language(live_server, bundle_file, capsys, language, agent_words, portal_words):
    code = main(["--lang", language, "upload", str(bundle_file), "--portal", live_server.url, "--token", "f" * 40])

    error = capsys.readouterr().err
    assert code == EXIT_REMOTE
    assert f"error[upload_rejected]: {agent_words}{portal_words}" in error


def test_refusal_follows_locale(live_server, bundle_file, capsys, monkeypatch):
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")

    main(["upload", str(bundle_file), "--portal", live_server.url, "--token", "f" * 40, "--single-request"])

    error = capsys.readouterr().err
    assert "门户拒绝了上传" in error
    assert "认证令牌无效。" in error
