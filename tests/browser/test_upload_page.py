"""The upload page in a real browser: a signed bundle hashed in parts and sent in byte ranges, resumed, and the plain form."""

from __future__ import annotations

import random
import re

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from certification.signing import generate_key
from portal.audit.models import AuditEntry
from portal.registry.models import Card, Membership, Vendor
from portal.registry.services import register_signing_key
from portal.submissions import views
from portal.submissions.models import Submission, UploadSession
from tests.portal.conftest import build_bundle, write_run_folder

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct-horse-battery"
CHUNK_BYTES = 2048


@pytest.fixture
def vendor_key(settings):
    """The signing key of vendor acme, whose member is the user owner; byte ranges of CHUNK_BYTES."""
    settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES = CHUNK_BYTES
    vendor = Vendor.objects.create(slug="acme", name="Acme 芯片")
    Card.objects.create(vendor=vendor, model="X100", serial="sn-1", peak_tflops={"fp32": 2.0}, approved=True)
    Membership.objects.create(vendor=vendor, user=get_user_model().objects.create_user("owner", password=PASSWORD))
    key = generate_key()
    with transaction.atomic():
        register_signing_key(vendor, key.public_pem())
    return key


@pytest.fixture
def bundle(vendor_key, tmp_path):
    """A signed bundle of vendor acme, several byte ranges long at the test's range size."""
    path = build_bundle(tmp_path, vendor_key)
    assert path.stat().st_size > 3 * CHUNK_BYTES
    return path


@pytest.fixture
def large_bundle(vendor_key, tmp_path):
    """A signed bundle of vendor acme with 1 MiB + 3 bytes of random predictions, many hash parts long."""
    from certification.bundle import write_bundle

    run_dir = write_run_folder(tmp_path / "large.run")
    (run_dir / "workloads/pretrain-llama/predictions.bin").write_bytes(random.Random(7).randbytes(1024**2 + 3))
    return write_bundle(run_dir, tmp_path / "large.tar", vendor_key).path


# Record the size of every Blob (file part) the page reads into memory, and every status line it shows.
RECORD_READS_AND_STATUS = """
window.blobReads = [];
window.statusTexts = [];
const arrayBuffer = Blob.prototype.arrayBuffer;
Blob.prototype.arrayBuffer = function () { window.blobReads.push(this.size); return arrayBuffer.call(this); };
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("upload-status");
  if (!status) { return; }
  new MutationObserver(() => window.statusTexts.push(status.textContent)).observe(status, {childList: true, characterData: true, subtree: true});
});
"""


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
    page.set_default_timeout(60_000)
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


def test_page_hashes_file_in_parts(page, large_bundle, settings, monkeypatch):
    """A file many hash parts long: each read is at most one part, and the status shows the hashing progress."""
    part_bytes = 64 * 1024
    monkeypatch.setattr(views, "BROWSER_HASH_PART_BYTES", part_bytes)
    settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES = 256 * 1024
    size = large_bundle.stat().st_size
    page.add_init_script(RECORD_READS_AND_STATUS)
    log_in(page, "owner", PASSWORD)
    sent = range_requests(page)
    page.goto("/submissions/upload/")
    page.set_input_files("input[type=file]", str(large_bundle))
    page.click("main form button[type=submit]")
    page.wait_for_function("window.statusTexts.some(text => text.includes('100%'))")
    statuses = page.evaluate("window.statusTexts")
    reads = page.evaluate("window.blobReads")
    page.wait_for_url(re.compile(r"/submissions/\d+/$"))

    assert size > 16 * part_bytes
    assert len(reads) == -(-size // part_bytes)
    assert max(reads) == part_bytes
    assert sum(reads) == size
    assert "正在计算文件的 sha256（0%）……" in statuses
    assert any(re.fullmatch(r"正在计算文件的 sha256（([1-9]|[1-9][0-9])%）……", text) for text in statuses)
    assert "正在计算文件的 sha256（100%）……" in statuses
    assert len(sent) == -(-size // (256 * 1024))
    assert Submission.objects.get().bundle.read() == large_bundle.read_bytes()


def test_page_resumes_after_reload(page, bundle):
    """A failed upload, then a reload and the same file: the page continues at the portal's offset in the same upload."""
    log_in(page, "owner", PASSWORD)

    def fail_second_range(route):
        if route.request.method == "PUT" and route.request.headers.get("content-range", "").startswith(f"bytes {CHUNK_BYTES}-"):
            route.fulfill(status=502, body="Bad Gateway")
        else:
            route.continue_()

    page.route(re.compile(r"/api/v1/uploads/[^/]+/$"), fail_second_range)
    page.goto("/submissions/upload/")
    page.set_input_files("input[type=file]", str(bundle))
    page.click("main form button[type=submit]")
    page.wait_for_selector("#upload-status.error")
    assert "http_502" in page.inner_text("#upload-status")
    assert UploadSession.objects.get().received == CHUNK_BYTES

    page.unroute(re.compile(r"/api/v1/uploads/[^/]+/$"))
    page.reload()
    sent = range_requests(page)
    page.set_input_files("input[type=file]", str(bundle))
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/submissions/\d+/$"))

    assert sent[0] == f"bytes {CHUNK_BYTES}-{2 * CHUNK_BYTES - 1}/{bundle.stat().st_size}"
    assert len(sent) == -(-bundle.stat().st_size // CHUNK_BYTES) - 1
    assert UploadSession.objects.get().state == UploadSession.State.COMPLETED
    assert Submission.objects.get().bundle.read() == bundle.read_bytes()


def test_page_rejects_too_large_file_before_hashing(page, bundle, settings):
    settings.BUNDLE_UPLOAD_MAX_BYTES = bundle.stat().st_size - 1
    page.add_init_script(RECORD_READS_AND_STATUS)
    log_in(page, "owner", PASSWORD)
    page.goto("/submissions/upload/")
    page.set_input_files("input[type=file]", str(bundle))
    page.click("main form button[type=submit]")
    page.wait_for_selector("#upload-status.error")

    assert "bundle_too_large" in page.inner_text("#upload-status")
    assert str(settings.BUNDLE_UPLOAD_MAX_BYTES) in page.inner_text("#upload-status")
    assert page.evaluate("window.blobReads") == []
    assert UploadSession.objects.count() == 0
