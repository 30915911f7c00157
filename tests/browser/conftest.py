"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, against pytest-django's live server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Playwright's sync API refuses to run where an asyncio loop is running; Django's
# async-safety check then needs this to allow ORM calls from the test thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="module")
def browser():
    """Launch Chromium for one test module; Playwright's event loop must not outlive it, or later asyncio tests fail."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing; install it with `apt-get install -y chromium` (scripts/setup.sh does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, locale="zh-CN")
    opened = context.new_page()
    # Generous: under two test workers a Paddle run on the other worker can slow the live server a lot.
    opened.set_default_timeout(60_000)
    yield opened
    # Let the last page's requests (such as plot images) finish before pytest-django flushes the shared
    # in-memory database: a request still running in the live server's thread makes SQLite report a table as locked.
    try:
        opened.wait_for_load_state("networkidle", timeout=30_000)
    finally:
        context.close()


def log_in(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("main form button[type=submit]")


def switch_language(page, code: str) -> None:
    page.select_option("form.language select[name=language]", code)
    with page.expect_navigation():
        page.click("form.language button[type=submit]")
