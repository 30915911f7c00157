"""Upload limits and resumable uploads: refused early, nothing left behind, resumed after a broken connection."""

import hashlib
import logging
import socket
import threading

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from agent.cli import main
from agent.errors import EXIT_OK
from portal.audit.models import AuditEntry
from portal.submissions.models import Submission, UploadSession
from portal.submissions.resumable import close_duplicate_sessions

from .conftest import login, tar_bytes, upload_file


@pytest.fixture(autouse=True)
def no_pipeline(monkeypatch):
    monkeypatch.setattr("portal.submissions.services.enqueue_validation", lambda submission_id: None)


@pytest.fixture
def temp_dir(settings, tmp_path):
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


def test_oversized_request_is_refused_before_its_body_is_read(live_server, settings, owner):
    """A raw request that announces a huge body and sends none gets 413 at once; reading the body would hang."""
    token = Token.objects.create(user=owner).key
    host, port = live_server.thread.host, live_server.thread.port
    head = (
        f"POST /api/v1/bundles/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {settings.BUNDLE_UPLOAD_MAX_BYTES * 2}\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(head.encode())
        reply = b""
        while b"bundle_too_large" not in reply and (chunk := connection.recv(65536)):
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "bundle_too_large" in reply
    assert Submission.objects.count() == 0


def test_browser_upload_too_large_shows_the_reason(client, owner, vendor, settings, temp_dir):
    settings.BUNDLE_UPLOAD_MAX_BYTES = 2048
    login(client, owner)
    response = client.post(reverse("submission-upload"), {"vendor": vendor.slug, "bundle": upload_file(b"x" * 200_000)})
    assert response.status_code == 413
    assert "bundle_too_large" in response.content.decode()
    assert list(temp_dir.iterdir()) == []


def test_stream_past_the_limit_leaves_no_temporary_file(owner_api, settings, temp_dir):
    """Content-Length inside the allowance, file past the limit: the handler stops and deletes what it wrote."""
    settings.BUNDLE_UPLOAD_MAX_BYTES = 4096
    response = owner_api.post(reverse("api-bundle-upload"), {"bundle": upload_file(tar_bytes({"a": b"y" * 20_000}))}, format="multipart")
    assert response.status_code == 413
    assert response.json()["code"] == "bundle_too_large"
    assert list(temp_dir.iterdir()) == []
    assert Submission.objects.count() == 0


def test_accepted_upload_leaves_no_temporary_file(owner_api, temp_dir):
    response = owner_api.post(reverse("api-bundle-upload"), {"bundle": upload_file(tar_bytes())}, format="multipart")
    assert response.status_code == 201
    assert list(temp_dir.iterdir()) == []


def test_browser_upload_of_a_wrong_file_stores_nothing(client, owner, vendor):
    login(client, owner)
    response = client.post(reverse("submission-upload"), {"vendor": vendor.slug, "bundle": upload_file(b"%PDF-1.7 not a bundle", "report.pdf")})
    assert response.status_code == 400
    assert "bundle_not_archive" in response.content.decode()
    assert Submission.objects.count() == 0


@pytest.mark.parametrize("language, expected", [
    ("en", "The file empty.tar is empty (0 bytes). Choose the .tar bundle"),
    ("zh-hans", "文件 empty.tar 是空的（0 字节）。请选择"),
])
def test_browser_upload_of_empty_file(client, owner, vendor, language, expected):
    login(client, owner)
    response = client.post(reverse("submission-upload"), {"vendor": vendor.slug, "bundle": upload_file(b"", "empty.tar")},
                           HTTP_ACCEPT_LANGUAGE=language)
    page = response.content.decode()
    assert response.status_code == 400
    assert "bundle_empty" in page
    assert expected in page
    assert Submission.objects.count() == 0


@pytest.mark.parametrize("language, expected", [("en", "is empty (0 bytes)"), ("zh-hans", "是空的（0 字节）")])
def test_declaring_empty_file_says_empty(owner_api, language, expected):
    reply = owner_api.post(reverse("api-upload-create"), {"size": 0, "sha256": "a" * 64, "name": "run.tar"}, format="json",
                           HTTP_ACCEPT_LANGUAGE=language)
    assert reply.status_code == 400
    assert reply.json()["code"] == "bundle_empty"
    assert expected in reply.json()["detail"]
    assert "run.tar" in reply.json()["detail"]


def test_duplicate_upload_is_one_submission(owner_api):
    data = tar_bytes()
    first = owner_api.post(reverse("api-bundle-upload"), {"bundle": upload_file(data)}, format="multipart")
    second = owner_api.post(reverse("api-bundle-upload"), {"bundle": upload_file(data)}, format="multipart")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Submission.objects.count() == 1


# Resumable uploads through the API -------------------------------------------

def declare(api, data: bytes, **extra):
    body = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "name": "run.tar", **extra}
    return api.post(reverse("api-upload-create"), body, format="json")


def put_range(api, session_id, data: bytes, start: int, end: int):
    """PUT bytes start..end (inclusive, as in HTTP ranges)."""
    return api.generic(
        "PUT", reverse("api-upload-session", args=[session_id]), data[start:end + 1], content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=f"bytes {start}-{end}/{len(data)}",
    )


def test_resumable_upload_in_ranges(owner_api, vendor):
    data = tar_bytes({"workloads/a/steps.jsonl": bytes(range(256)) * 400})
    session = declare(owner_api, data).json()
    half = len(data) // 2

    assert put_range(owner_api, session["id"], data, 0, half - 1).json()["received"] == half
    assert owner_api.get(reverse("api-upload-session", args=[session["id"]])).json()["received"] == half

    stale = put_range(owner_api, session["id"], data, 0, 99)
    assert (stale.status_code, stale.json()["code"]) == (409, "upload_offset_mismatch")
    assert put_range(owner_api, session["id"], data, half, len(data) - 1).json()["received"] == len(data)

    done = owner_api.post(reverse("api-upload-complete", args=[session["id"]]))
    assert done.status_code == 201
    submission = Submission.objects.get()
    assert submission.bundle.read() == data
    assert not UploadSession.objects.get().partial_path.exists()


def test_declaring_a_stored_bundle_names_its_submission(owner_api):
    data = tar_bytes()
    owner_api.post(reverse("api-bundle-upload"), {"bundle": upload_file(data)}, format="multipart")
    reply = declare(owner_api, data)
    assert reply.status_code == 200
    assert reply.json()["submission"]["id"] == Submission.objects.get().pk


def test_declaring_stored_bundle_twice_keeps_upload(owner_api):
    data = tar_bytes()
    owner_api.post(reverse("api-bundle-upload"), {"bundle": upload_file(data)}, format="multipart")
    first = declare(owner_api, data).json()
    second = declare(owner_api, data).json()
    assert first["state"] == "completed"
    assert second["id"] == first["id"]
    assert UploadSession.objects.count() == 1


def store_by_single_request(api, data: bytes) -> int:
    reply = api.post(reverse("api-bundle-upload"), {"bundle": upload_file(data)}, format="multipart")
    assert reply.status_code == 201
    return reply.json()["id"]


def test_last_range_of_stored_bundle_closes_upload(owner_api, django_capture_on_commit_callbacks):
    data = tar_bytes()
    session = declare(owner_api, data).json()
    stored = store_by_single_request(owner_api, data)
    with django_capture_on_commit_callbacks(execute=True):
        reply = put_range(owner_api, session["id"], data, 0, len(data) - 1).json()
    assert reply["state"] == "completed"
    assert reply["submission"]["id"] == stored
    assert not UploadSession.objects.get(pk=session["id"]).partial_path.exists()
    done = owner_api.post(reverse("api-upload-complete", args=[session["id"]]))
    assert (done.status_code, done.json()["id"]) == (200, stored)
    assert Submission.objects.count() == 1
    assert AuditEntry.objects.filter(action="upload.duplicate_closed", object_id=session["id"]).exists()


def test_declaring_stored_bundle_closes_open_upload(owner_api, django_capture_on_commit_callbacks):
    data = tar_bytes()
    session = declare(owner_api, data).json()
    put_range(owner_api, session["id"], data, 0, len(data) // 2 - 1)
    stored = store_by_single_request(owner_api, data)
    with django_capture_on_commit_callbacks(execute=True):
        assert declare(owner_api, data).json()["submission"]["id"] == stored
    left = UploadSession.objects.get(pk=session["id"])
    assert (left.state, left.submission_id) == (UploadSession.State.COMPLETED, stored)
    assert not left.partial_path.exists()
    assert not UploadSession.objects.filter(state=UploadSession.State.OPEN).exists()


def test_sweep_closes_received_duplicate(owner_api, django_capture_on_commit_callbacks):
    data = tar_bytes()
    session = declare(owner_api, data).json()
    assert put_range(owner_api, session["id"], data, 0, len(data) - 1).json()["state"] == "open"
    stored = store_by_single_request(owner_api, data)
    other = tar_bytes({"workloads/b/steps.jsonl": b"x"})
    unrelated = declare(owner_api, other).json()
    put_range(owner_api, unrelated["id"], other, 0, len(other) - 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert close_duplicate_sessions() == 1
    closed = UploadSession.objects.get(pk=session["id"])
    assert (closed.state, closed.submission_id) == (UploadSession.State.COMPLETED, stored)
    assert not closed.partial_path.exists()
    assert UploadSession.objects.get(pk=unrelated["id"]).state == UploadSession.State.OPEN


def test_declaring_twice_resumes_the_open_upload(owner_api):
    data = tar_bytes()
    first, second = declare(owner_api, data), declare(owner_api, data)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


@pytest.mark.parametrize("payload, code", [
    (b"plain text, not a tar archive", "bundle_not_archive"),
    (None, "upload_digest_mismatch"),
])
def test_completing_a_bad_upload_discards_its_bytes(owner_api, payload, code):
    data = payload or tar_bytes()
    declared = {"sha256": "0" * 64} if payload is None else {}
    session = declare(owner_api, data, **declared).json()
    put_range(owner_api, session["id"], data, 0, len(data) - 1)
    reply = owner_api.post(reverse("api-upload-complete", args=[session["id"]]))
    assert (reply.status_code, reply.json()["code"]) == (400, code)
    stored = UploadSession.objects.get()
    assert stored.received == 0
    assert not stored.partial_path.exists()
    assert Submission.objects.count() == 0


@pytest.mark.parametrize("fields, code", [
    ({"size": 0, "sha256": "a" * 64}, "bundle_empty"),
    ({"size": -1, "sha256": "a" * 64}, "upload_size_invalid"),
    ({"size": False, "sha256": "a" * 64}, "upload_size_invalid"),
    ({"size": "ten", "sha256": "a" * 64}, "upload_size_invalid"),
    ({"size": 10, "sha256": "xyz"}, "upload_digest_invalid"),
    ({"size": 10**15, "sha256": "a" * 64}, "bundle_too_large"),
])
def test_bad_declarations_are_refused(owner_api, fields, code):
    reply = owner_api.post(reverse("api-upload-create"), fields, format="json")
    assert reply.json()["code"] == code
    assert UploadSession.objects.count() == 0


def test_range_without_header_is_refused(owner_api):
    session = declare(owner_api, tar_bytes()).json()
    reply = owner_api.generic("PUT", reverse("api-upload-session", args=[session["id"]]), b"abc", content_type="application/octet-stream")
    assert reply.json()["code"] == "upload_range_missing"


# The agent over a connection that breaks ----------------------------------------

class CuttingProxy:
    """A loopback TCP proxy that closes the first connection that carries more than `cut_after` bytes from the client."""

    def __init__(self, target: tuple[str, int], cut_after: int):
        self.target, self.cut_after = target, cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(self.target)
            threading.Thread(target=self.pump, args=(client, server, self.cut_after), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, None), daemon=True).start()

    def pump(self, source, target, limit):
        sent = 0
        try:
            while data := source.recv(65536):
                if limit is not None and not self.cuts and sent + len(data) > limit:
                    self.cuts += 1
                    target.sendall(data[: limit - sent])
                    break
                target.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self):
        self.listener.close()


def test_agent_resumes_after_the_connection_breaks(live_server, owner, tmp_path, caplog):
    data = tar_bytes({"workloads/a/steps.jsonl": bytes(range(256)) * 12_000})  # about 3 MiB: three ranges of 1 MiB
    path = tmp_path / "run.tar"
    path.write_bytes(data)
    proxy = CuttingProxy((live_server.thread.host, live_server.thread.port), cut_after=600_000)
    try:
        code = main(["upload", str(path), "--portal", f"http://127.0.0.1:{proxy.port}", "--token", Token.objects.create(user=owner).key, "--chunk-mib", "1"])
    finally:
        proxy.close()
    assert code == EXIT_OK
    assert proxy.cuts == 1
    assert Submission.objects.get().bundle.read() == data
    assert "retry 1 of 5" in caplog.text


@pytest.mark.parametrize("sent, language, expected", [
    ("half", "en", "continuing the open upload {id} from byte {received} of {size}"),
    ("half", "zh", "从第 {received} 字节（共 {size} 字节）继续未完成的上传 {id}"),
    ("all", "en", "the portal has received all {size} bytes of the open upload {id}; completing it"),
    ("all", "zh", "门户已收到未完成上传 {id} 的全部 {size} 字节，正在完成该上传"),
])
def test_agent_names_how_it_resumes(live_server, owner, owner_api, tmp_path, caplog, sent, language, expected):
    data = tar_bytes({"workloads/a/steps.jsonl": bytes(range(256)) * 400})
    path = tmp_path / "run.tar"
    path.write_bytes(data)
    session = declare(owner_api, data).json()
    received = len(data) // 2 if sent == "half" else len(data)
    put_range(owner_api, session["id"], data, 0, received - 1)
    caplog.set_level(logging.INFO, logger="agent")

    code = main(["--lang", language, "upload", str(path), "--portal", live_server.url, "--token", Token.objects.get(user=owner).key])

    assert code == EXIT_OK
    assert expected.format(id=session["id"], received=received, size=len(data)) in caplog.text
    assert "resuming" not in caplog.text
    assert Submission.objects.get().bundle.read() == data


@pytest.mark.parametrize("language, resuming, hashing", [
    ("zh-hans", "连接中断，正在继续（第 %(attempt)s 次重试，共 %(retries)s 次）……", "正在计算文件的 sha256（%(percent)s）……"),
    ("en", "The connection broke; resuming (retry %(attempt)s of %(retries)s)…", "Computing the sha256 of the file (%(percent)s)…"),
])
def test_upload_page_script_texts_translated(client, owner, language, resuming, hashing):
    login(client, owner)
    client.cookies["django_language"] = language
    page = client.get(reverse("submission-upload")).content.decode("utf-8")
    assert f'data-resuming-text="{resuming}"' in page
    assert f'data-hashing-text="{hashing}"' in page
    assert "[bundle_too_large]\"" in page
