"""The upload page in a real browser: a signed bundle hashed in parts and sent in byte ranges, resumed, and the plain form."""

from __future__ import annotations

import hashlib
import json
import random
import re

import pytest
from django.contrib.auth import get_user_model

from certification.signing import generate_key
from portal.audit.models import AuditEntry
from portal.registry.models import Card, Membership, Vendor
from portal.registry.services import register_signing_key
from portal.submissions import views
from portal.submissions.models import Submission, UploadSession
from tests.portal.conftest import build_bundle, register_new_key, write_run_folder

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct-horse-battery"
CHUNK_BYTES = 2048
HASH_PART_BYTES = 64 * 1024
# The byte ranges of one upload session go to this API path.
UPLOAD_SESSION_URL = re.compile(r"/api/v1/uploads/[^/]+/$")


@pytest.fixture
def vendor_key(settings):
    """The signing key of vendor acme, whose member is the user owner; byte ranges of CHUNK_BYTES."""
    settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES = CHUNK_BYTES
    vendor = Vendor.objects.create(slug="acme", name="Acme 芯片")
    Card.objects.create(vendor=vendor, model="X100", serial="sn-1", peak_tflops={"fp32": 2.0}, approved=True)
    Membership.objects.create(vendor=vendor, user=get_user_model().objects.create_user("owner", password=PASSWORD))
    return register_new_key(vendor)


@pytest.fixture
def bundle(vendor_key, tmp_path):
    """A signed bundle of vendor acme, several byte ranges long at the test's range size."""
    path = build_bundle(tmp_path, vendor_key)
    assert path.stat().st_size > 3 * CHUNK_BYTES
    return path


@pytest.fixture
def large_bundle(vendor_key, tmp_path, settings):
    """A signed bundle of vendor acme with 1 MiB + 3 bytes of random predictions, many hash parts long; byte ranges of 256 KiB."""
    from certification.bundle import write_bundle

    settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES = 256 * 1024

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


# Record every message that a Web Worker of the page posts to it.
RECORD_WORKER_MESSAGES = """
window.workerMessages = [];
const NativeWorker = window.Worker;
window.Worker = function (url, options) {
  const worker = new NativeWorker(url, options);
  worker.addEventListener("message", (event) => window.workerMessages.push(event.data));
  return worker;
};
"""

# Press the Cancel button as soon as the status shows a hashing percentage above 0.
CANCEL_AT_FIRST_PROGRESS = """() => {
  const status = document.getElementById("upload-status");
  const observer = new MutationObserver(() => {
    if (/（[1-9][0-9]?%）/.test(status.textContent)) {
      observer.disconnect();
      document.getElementById("upload-cancel").click();
    }
  });
  observer.observe(status, {childList: true, characterData: true, subtree: true});
}"""

READ_STORED_STATES = """() => Object.fromEntries(Object.keys(localStorage)
  .filter(key => key.startsWith("accel-cert.upload-hash:")).map(key => [key, JSON.parse(localStorage.getItem(key))]))"""


def declared_digests(page) -> list[str]:
    """Collect the sha256 of every upload that the page declares to the portal."""
    digests = []

    def record(request):
        if request.method == "POST" and request.url.endswith("/api/v1/uploads/"):
            digests.append(json.loads(request.post_data)["sha256"])

    page.on("request", record)
    return digests


def range_requests(page) -> list[str]:
    sent = []
    page.on("request", lambda request: sent.append(request.headers.get("content-range", "")) if request.method == "PUT" else None)
    return sent


@pytest.fixture
def hash_parts(monkeypatch) -> int:
    """Make the page hash files in parts of HASH_PART_BYTES, so the large bundle is many parts long, and return the part size."""
    monkeypatch.setattr(views, "BROWSER_HASH_PART_BYTES", HASH_PART_BYTES)
    return HASH_PART_BYTES


def log_in_recording(page, script: str) -> None:
    """Run `script` in every page the browser opens from now on, then log in as the vendor member owner."""
    page.add_init_script(script)
    log_in(page, "owner", PASSWORD)


def is_second_range(request) -> bool:
    return request.method == "PUT" and request.headers.get("content-range", "").startswith(f"bytes {CHUNK_BYTES}-")


def submit_file(page, path) -> None:
    """Choose `path` in the upload form and press its submit button."""
    page.set_input_files("input[type=file]", str(path))
    page.click("main form button[type=submit]")


def wait_for_submission_page(page) -> None:
    page.wait_for_url(re.compile(r"/submissions/\d+/$"))


def wait_for_cancelled(page) -> None:
    page.wait_for_function("document.getElementById('upload-status').textContent.startsWith('上传已取消')")


def upload(page, path) -> None:
    page.goto("/submissions/upload/")
    submit_file(page, path)
    wait_for_submission_page(page)


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
        if is_second_range(route.request) and not aborted:
            aborted.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(UPLOAD_SESSION_URL, break_second_range)
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
    submit_file(page, bad)
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


def test_page_hashes_file_in_parts(page, large_bundle, settings, hash_parts):
    """A file many hash parts long: a Web Worker hashes it part by part, and the status shows the hashing progress."""
    part_bytes = hash_parts
    settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES = 256 * 1024
    size = large_bundle.stat().st_size
    log_in_recording(page, RECORD_READS_AND_STATUS + RECORD_WORKER_MESSAGES)
    sent = range_requests(page)
    declared = declared_digests(page)
    page.goto("/submissions/upload/")
    submit_file(page, large_bundle)
    page.wait_for_function("window.statusTexts.some(text => text.includes('100%'))")
    statuses = page.evaluate("window.statusTexts")
    reads = page.evaluate("window.blobReads")
    messages = page.evaluate("window.workerMessages")
    wait_for_submission_page(page)

    assert size > 16 * part_bytes
    hashed = [message["hashed"] for message in messages if message["type"] == "progress"]
    assert hashed == [*range(0, size, part_bytes), size]
    assert messages[-1] == {"type": "done", "sha256": hashlib.sha256(large_bundle.read_bytes()).hexdigest()}
    assert declared == [hashlib.sha256(large_bundle.read_bytes()).hexdigest()]
    assert reads == [], "the page itself read the file, so it hashed on the main thread"
    assert "正在计算文件的 sha256（0%）……" in statuses
    assert any(re.fullmatch(r"正在计算文件的 sha256（([1-9]|[1-9][0-9])%）……", text) for text in statuses)
    assert "正在计算文件的 sha256（100%）……" in statuses
    assert len(sent) == -(-size // (256 * 1024))
    assert Submission.objects.get().bundle.read() == large_bundle.read_bytes()


def test_page_hashes_without_worker(page, large_bundle, hash_parts):
    """A browser without Web Workers: the page shows a notice and hashes the file itself, in parts."""
    part_bytes = hash_parts
    size = large_bundle.stat().st_size
    log_in_recording(page, "delete window.Worker;" + RECORD_READS_AND_STATUS)
    declared = declared_digests(page)
    page.goto("/submissions/upload/")
    submit_file(page, large_bundle)
    page.wait_for_function("window.statusTexts.some(text => text.includes('100%'))")
    notice = page.inner_text("#upload-notice")
    reads = page.evaluate("window.blobReads")
    wait_for_submission_page(page)

    assert notice == "此浏览器不支持 Web Worker，因此由页面自己计算 sha256，计算结束前页面可能响应缓慢。"
    assert reads == [part_bytes] * (size // part_bytes) + [size % part_bytes]
    assert declared == [hashlib.sha256(large_bundle.read_bytes()).hexdigest()]
    assert Submission.objects.get().bundle.read() == large_bundle.read_bytes()


def cancel_after_first_part(page, path) -> dict:
    """Upload `path` and press Cancel as soon as the first hash part is done; return the stored hashing state."""
    page.goto("/submissions/upload/")
    page.evaluate(CANCEL_AT_FIRST_PROGRESS)
    submit_file(page, path)
    wait_for_cancelled(page)
    return page.evaluate(READ_STORED_STATES)


def test_cancel_stops_hashing(page, large_bundle, hash_parts):
    part_bytes = hash_parts
    log_in_recording(page, RECORD_READS_AND_STATUS + RECORD_WORKER_MESSAGES)
    stored = cancel_after_first_part(page, large_bundle)
    statuses = page.evaluate("window.statusTexts")
    page.wait_for_timeout(1000)  # a worker still running would post its next parts and the digest meanwhile

    assert statuses[-1] == "上传已取消。请选择同一文件再次上传，页面会从停止处继续。"
    assert page.evaluate("window.statusTexts") == statuses
    assert "done" not in [message["type"] for message in page.evaluate("window.workerMessages")]
    assert page.is_enabled("main form button[type=submit]")
    assert page.is_hidden("#upload-cancel")
    assert [state["midstate"]["length"] for state in stored.values()] == [part_bytes]
    assert UploadSession.objects.count() == 0


def test_cancel_stops_sending(page, bundle):
    """Cancel while a byte range is on its way: the request is aborted, and the same file later continues the open upload."""
    log_in(page, "owner", PASSWORD)
    held = []

    def hold_second_range(route):
        if is_second_range(route.request):
            held.append(route.request.url)  # left unanswered, so only the page's abort ends the request
        else:
            route.continue_()

    page.route(UPLOAD_SESSION_URL, hold_second_range)
    page.goto("/submissions/upload/")
    page.set_input_files("input[type=file]", str(bundle))
    with page.expect_request(lambda request: request.headers.get("content-range", "").startswith(f"bytes {CHUNK_BYTES}-")):
        page.click("main form button[type=submit]")
    page.click("#upload-cancel")
    wait_for_cancelled(page)

    assert len(held) == 1
    assert page.is_enabled("main form button[type=submit]")
    session = UploadSession.objects.get()
    assert session.state == UploadSession.State.OPEN
    assert session.received == CHUNK_BYTES

    page.unroute(UPLOAD_SESSION_URL)
    page.reload()
    sent = range_requests(page)
    submit_file(page, bundle)
    wait_for_submission_page(page)
    assert sent[0] == f"bytes {CHUNK_BYTES}-{2 * CHUNK_BYTES - 1}/{bundle.stat().st_size}"
    assert Submission.objects.get().bundle.read() == bundle.read_bytes()


def test_page_continues_hash_after_reload(page, large_bundle, hash_parts):
    """Cancel after the first hash part, reload, choose the file again: the worker starts at the stored midstate."""
    part_bytes = hash_parts
    size = large_bundle.stat().st_size
    log_in_recording(page, RECORD_READS_AND_STATUS + RECORD_WORKER_MESSAGES)
    cancel_after_first_part(page, large_bundle)

    page.reload()
    declared = declared_digests(page)
    submit_file(page, large_bundle)
    page.wait_for_function("window.workerMessages.some(message => message.type === 'done')")
    notice = page.inner_text("#upload-notice")
    messages = page.evaluate("window.workerMessages")
    wait_for_submission_page(page)

    assert notice == "从上次停止处（6%）继续计算 sha256。"
    hashed = [message["hashed"] for message in messages if message["type"] == "progress"]
    assert hashed == [*range(part_bytes, size, part_bytes), size]
    assert messages[-1] == {"type": "done", "sha256": hashlib.sha256(large_bundle.read_bytes()).hexdigest()}
    assert declared == [hashlib.sha256(large_bundle.read_bytes()).hexdigest()]
    assert Submission.objects.get().bundle.read() == large_bundle.read_bytes()
    assert page.evaluate(READ_STORED_STATES) == {}, "the stored state outlived the finished upload"


def test_wrong_stored_midstate_fails_clearly(page, large_bundle, hash_parts):
    """A stored midstate with one changed bit: the portal rejects the digest, the page deletes the state, and a retry hashes anew."""
    log_in_recording(page, RECORD_READS_AND_STATUS + RECORD_WORKER_MESSAGES)
    cancel_after_first_part(page, large_bundle)
    page.evaluate("""() => {
      const key = Object.keys(localStorage).find(name => name.startsWith("accel-cert.upload-hash:"));
      const record = JSON.parse(localStorage.getItem(key));
      record.midstate.words[0] ^= 1;
      localStorage.setItem(key, JSON.stringify(record));
    }""")

    page.reload()
    submit_file(page, large_bundle)
    page.wait_for_selector("#upload-status.error", timeout=120_000)
    assert "upload_digest_mismatch" in page.inner_text("#upload-status")
    assert Submission.objects.count() == 0
    assert UploadSession.objects.get().received == 0
    assert page.evaluate(READ_STORED_STATES) == {}

    page.reload()
    submit_file(page, large_bundle)
    wait_for_submission_page(page)
    assert Submission.objects.get().bundle.read() == large_bundle.read_bytes()


def test_stored_digest_of_stored_bundle_is_rechecked(page, bundle, large_bundle):
    """A stored digest that names another stored bundle: the page hashes the chosen file anew instead of trusting it."""
    log_in(page, "owner", PASSWORD)
    upload(page, bundle)
    first = Submission.objects.get()
    page.goto("/submissions/upload/")
    page.set_input_files("input[type=file]", str(large_bundle))
    page.evaluate("""(sha256) => {
      const file = document.querySelector("input[type=file]").files[0];
      const key = "accel-cert.upload-hash:" + JSON.stringify([file.name, file.size, file.lastModified]);
      localStorage.setItem(key, JSON.stringify({savedAt: Date.now(), sha256: sha256}));
    }""", first.sha256)
    declared = declared_digests(page)
    page.click("main form button[type=submit]")
    wait_for_submission_page(page)

    assert declared == [first.sha256, hashlib.sha256(large_bundle.read_bytes()).hexdigest()]
    second = Submission.objects.exclude(pk=first.pk).get()
    assert page.url.endswith(f"/submissions/{second.pk}/")
    assert second.bundle.read() == large_bundle.read_bytes()


def test_page_resumes_after_reload(page, bundle):
    """A failed upload, then a reload and the same file: the page reuses the stored digest and continues at the portal's offset."""
    log_in(page, "owner", PASSWORD)

    def fail_second_range(route):
        if is_second_range(route.request):
            route.fulfill(status=502, body="Bad Gateway")
        else:
            route.continue_()

    page.route(UPLOAD_SESSION_URL, fail_second_range)
    workers = []
    page.on("worker", lambda worker: workers.append(worker.url))
    page.goto("/submissions/upload/")
    submit_file(page, bundle)
    page.wait_for_selector("#upload-status.error")
    assert "http_502" in page.inner_text("#upload-status")
    assert UploadSession.objects.get().received == CHUNK_BYTES
    assert [url.rsplit("/", 1)[-1] for url in workers] == ["sha256_worker.js"]

    workers.clear()
    page.unroute(UPLOAD_SESSION_URL)
    page.reload()
    sent = range_requests(page)
    submit_file(page, bundle)
    wait_for_submission_page(page)

    assert workers == [], "the page hashed the file again"
    assert sent[0] == f"bytes {CHUNK_BYTES}-{2 * CHUNK_BYTES - 1}/{bundle.stat().st_size}"
    assert len(sent) == -(-bundle.stat().st_size // CHUNK_BYTES) - 1
    assert UploadSession.objects.get().state == UploadSession.State.COMPLETED
    assert Submission.objects.get().bundle.read() == bundle.read_bytes()


def test_page_rejects_too_large_file_before_hashing(page, bundle, settings):
    settings.BUNDLE_UPLOAD_MAX_BYTES = bundle.stat().st_size - 1
    log_in_recording(page, RECORD_READS_AND_STATUS)
    page.goto("/submissions/upload/")
    submit_file(page, bundle)
    page.wait_for_selector("#upload-status.error")

    assert "bundle_too_large" in page.inner_text("#upload-status")
    assert str(settings.BUNDLE_UPLOAD_MAX_BYTES) in page.inner_text("#upload-status")
    assert page.evaluate("window.blobReads") == []
    assert UploadSession.objects.count() == 0


def test_page_tells_bundle_validated_again(page, vendor_key, tmp_path):
    """A bundle rejected for its unregistered key, uploaded again after the key is registered: the page says so and links the submission."""
    key = generate_key()
    path = build_bundle(tmp_path, key)
    log_in(page, "owner", PASSWORD)
    upload(page, path)
    submission = Submission.objects.get()
    assert submission.report.error_code == "signature_key_unknown"

    register_signing_key(submission.vendor, key.public_pem())
    page.goto("/submissions/upload/")
    submit_file(page, path)
    page.wait_for_selector("#upload-notice a")

    assert "bundle_revalidating" in page.inner_text("#upload-status")
    assert "signature_key_unknown" in page.inner_text("#upload-status")
    assert page.get_attribute("#upload-notice a", "href").endswith(f"/submissions/{submission.pk}/")
    assert page.url.endswith("/submissions/upload/")
    assert Submission.objects.count() == 1
    assert Submission.objects.get().report.error_code != "signature_key_unknown"


def test_page_tells_bundle_already_uploaded(page, vendor_key, tmp_path):
    """A bundle rejected for a cause in the bundle itself (it names another vendor): the page says it is already uploaded."""
    path = build_bundle(tmp_path, vendor_key, vendor="globex")
    log_in(page, "owner", PASSWORD)
    upload(page, path)
    submission = Submission.objects.get()
    assert submission.report.error_code == "vendor_mismatch"

    page.goto("/submissions/upload/")
    submit_file(page, path)
    page.wait_for_selector("#upload-notice a")

    assert "bundle_already_uploaded" in page.inner_text("#upload-status")
    assert f"{submission.pk}" in page.inner_text("#upload-notice a")
    assert Submission.objects.count() == 1
