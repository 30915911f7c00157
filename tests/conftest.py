import pytest

from agent.i18n import set_language


@pytest.fixture(autouse=True)
def english_messages(monkeypatch):
    """Run every test in the agent's default language, English, whatever the developer's locale is."""
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    set_language(None)
    yield
    set_language(None)
