"""The environment that tests/agent/launching.py gives launched agent runs."""

from tests.agent.launching import environment


def test_launch_environment_english(monkeypatch):
    monkeypatch.setenv("LC_ALL", "zh_CN.UTF-8")
    monkeypatch.setenv("LC_MESSAGES", "zh_CN.UTF-8")
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")

    launched = environment()

    assert "LC_ALL" not in launched
    assert "LC_MESSAGES" not in launched
    assert launched["LANG"] == "C.UTF-8"
    assert launched["AGENT_HEARTBEAT_SECONDS"] == "1"
