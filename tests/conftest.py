import pytest

from agent.i18n import set_language


def pytest_configure(config):
    """Create the portal's ticket and credential keys before pytest-xdist starts its workers.

    The portal creates each key file on first use. Two workers of one run could
    both find it missing and each write its own key, so one of them would sign
    with a key that the other has replaced.
    """
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return

    from django.conf import settings

    from certification.signing import generate_key, save_private_key

    for path in (settings.PORTAL_TICKET_KEY_PATH, settings.PORTAL_CREDENTIAL_KEY_PATH):
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_private_key(generate_key(), path)


def pytest_collection_modifyitems(config, items):
    """Move the tests of modules that hold slow tests to the front, keeping the order otherwise.

    pytest-xdist hands out whole modules (--dist loadfile) in this order when
    run with --no-loadscope-reorder. A module with a long training run that
    started last would keep one worker busy after the other has finished.
    """
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)


@pytest.fixture(autouse=True)
def english_messages(monkeypatch):
    """Run every test in the agent's default language, English, whatever the developer's locale is."""
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    set_language(None)
    yield
    set_language(None)
