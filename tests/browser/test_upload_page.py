"""The upload page in a real browser: a signed bundle sent in byte ranges, resumed after a broken connection, and the plain form."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from certification.signing import generate_key
from portal.audit.models import AuditEntry
from portal.registry.models import Card, Membership, Vendor
from portal.registry.services import register_signing_key
from portal.submissions.models import Submission, UploadSession
from tests.portal.conftest import build_bundle

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct-horse-battery"
CHUNK_BYTES = 2048


@pytest.fixture
def bundle(settings, tmp_path):
    """A signed bundle of vendor acme, several byte ranges long at the test's range size."""
    settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES = CHUNK_BYTES
    vendor = Vendor.objects.create(slug="acme", name="Acme 芯片")
    Card.objects.create(vendor=vendor, model="X100", serial="sn-1", peak_tflops={"fp32": 2.0}, approved=True)
    Membership.objects.create(vendor=vendor, user=get_user_model().objects.create_user("owner", password=PASSWORD))
    key = generate_key()
    with transaction.atomic():
        register_signing_key(vendor, key.public_pem())
    path = build_bundle(tmp_path, key)
    assert path.stat().st_size > 3 * CHUNK_BYTES
    return path


def range_requests(page) -> list[str]:
    sent = []
    page.on("request", lambda request: sent.append(request.headers.get("content-range", "")) if request.method == "PUT" else None)
    return sent


def upload(page, path) -> None:
    page.goto("/submissions/upload/")
    page.set_input_files("input[type=file]", str(path))
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/submissions/\d+/$"))


def test_page_sends_byte_ranges(page, bundle):
    log_in(page, "owner", PASSWORD)
    sent = range_requests(page)
    upload(page, bundle)

    submission = Submission.objects.get()
    assert submission.bundle.read() == bundle.read_bytes()
    assert submission.original_name == bundle.name
    assert UploadSession.objects.get().state == UploadSession.State.COMPLETED
    assert len(sent) == -(-bundle.stat().st_size // CHUNK_BYTES)
    assert sent[0] == f"bytes 0-{CHUNK_BYTES - 1}/{bundle.stat().st_size}"
    assert AuditEntry.objects.get(action="submission.received").actor.username == "owner"


def test_page_resumes_after_broken_connection(page, bundle):
    log_in(page, "owner", PASSWORD)
    aborted = []

    def break_second_range(route):
        if route.request.method == "PUT" and route.request.headers.get("content-range", "").startswith(f"bytes {CHUNK_BYTES}-") and not aborted:
            aborted.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r"/api/v1/uploads/[^/]+/$"), break_second_range)
    sent = range_requests(page)
    upload(page, bundle)

    assert len(aborted) == 1
    assert Submission.objects.get().bundle.read() == bundle.read_bytes()
    assert sent.count(f"bytes {CHUNK_BYTES}-{2 * CHUNK_BYTES - 1}/{bundle.stat().st_size}") == 2


def test_page_shows_api_error(page, bundle):
    """A file that is not a tar archive: the complete call is rejected and the page shows the portal's reason."""
    bad = bundle.with_name("notes.tar")
    bad.write_bytes(b"plain text, not an archive" * 400)
    log_in(page, "owner", PASSWORD)
    page.goto("/submissions/upload/")
    page.set_input_files("input[type=file]", str(bad))
    page.click("main form button[type=submit]")
    page.wait_for_selector("#upload-status.error")

    assert "bundle_not_archive" in page.inner_text("#upload-status")
    assert Submission.objects.count() == 0


def test_plain_form_without_javascript(browser, live_server, bundle):
    context = browser.new_context(base_url=live_server.url, locale="zh-CN", java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        log_in(page, "owner", PASSWORD)
        sent = range_requests(page)
        page.goto("/submissions/upload/")
        page.set_input_files("input[type=file]", str(bundle))
        with page.expect_navigation():
            page.click("main form button[type=submit]")
        assert re.search(r"/submissions/\d+/$", page.url)
    finally:
        context.close()

    assert sent == []
    assert UploadSession.objects.count() == 0
    assert Submission.objects.get().bundle.read() == bundle.read_bytes()
