"""Abandoned resumable uploads expire: the partial file is deleted, the API returns upload_session_expired, and the agent starts again."""

from datetime import timedelta

import pytest
import requests
from django.conf import settings as django_settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from agent.cli import main
from agent.errors import EXIT_OK
from portal.audit.models import AuditEntry
from portal.celery import app as celery_app
from portal.submissions.models import Submission, UploadSession
from portal.submissions.resumable import expire_sessions
from portal.submissions.tasks import expire_upload_sessions

from .conftest import tar_bytes
from .test_uploads import declare, put_range


@pytest.fixture(autouse=True)
def no_pipeline(monkeypatch):
    monkeypatch.setattr("portal.submissions.services.enqueue_validation", lambda submission_id: None)


def age(session_id, hours: float) -> None:
    """Move the upload's last activity `hours` into the past."""
    UploadSession.objects.filter(pk=session_id).update(updated_at=timezone.now() - timedelta(hours=hours))


@pytest.fixture
def half_sent(owner_api):
    data = tar_bytes({"workloads/a/steps.jsonl": bytes(range(256)) * 100})
    session = declare(owner_api, data).json()
    put_range(owner_api, session["id"], data, 0, len(data) // 2 - 1)
    return data, UploadSession.objects.get(pk=session["id"])


def test_stale_upload_expires(settings, half_sent):
    settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS = 48
    data, session = half_sent
    assert session.partial_path.exists()
    age(session.pk, 49)

    assert expire_sessions() == 1
    session.refresh_from_db()
    assert session.state == UploadSession.State.EXPIRED
    assert session.received == 0
    assert not session.partial_path.exists()
    entry = AuditEntry.objects.get(action="upload.expired")
    assert entry.object_id == str(session.pk)
    assert entry.data["received"] == len(data) // 2
    assert entry.actor is None


def test_recent_upload_is_kept(settings, half_sent):
    settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS = 48
    _data, session = half_sent
    age(session.pk, 47)

    assert expire_sessions() == 0
    session.refresh_from_db()
    assert session.state == UploadSession.State.OPEN
    assert session.partial_path.exists()
    assert not AuditEntry.objects.filter(action="upload.expired").exists()


def test_completed_upload_is_not_expired(owner_api):
    data = tar_bytes()
    session = declare(owner_api, data).json()
    put_range(owner_api, session["id"], data, 0, len(data) - 1)
    assert owner_api.post(reverse("api-upload-complete", args=[session["id"]])).status_code == 201
    age(session["id"], 1000)

    assert expire_sessions() == 0
    assert UploadSession.objects.get().state == UploadSession.State.COMPLETED


@pytest.mark.parametrize("method", ["get", "put", "complete"])
def test_api_answers_an_expired_upload(owner_api, half_sent, method):
    data, session = half_sent
    age(session.pk, django_settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS + 1)
    expire_sessions()

    url = reverse("api-upload-session", args=[session.pk])
    reply = {
        "get": lambda: owner_api.get(url),
        "put": lambda: put_range(owner_api, session.pk, data, 0, 9),
        "complete": lambda: owner_api.post(reverse("api-upload-complete", args=[session.pk])),
    }[method]()
    assert reply.status_code == 410
    assert reply.json()["code"] == "upload_session_expired"
    assert str(session.pk) in reply.json()["detail"]
    assert Submission.objects.count() == 0


def test_stale_upload_expires_on_first_request(owner_api, half_sent):
    """Between two runs of the periodic task, a stale upload is expired by the request that finds it."""
    _data, session = half_sent
    age(session.pk, django_settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS + 1)

    reply = owner_api.get(reverse("api-upload-session", args=[session.pk]))
    assert reply.json()["code"] == "upload_session_expired"
    assert not session.partial_path.exists()
    assert AuditEntry.objects.filter(action="upload.expired").count() == 1


def test_declaring_again_opens_a_new_upload(owner_api, half_sent):
    data, session = half_sent
    age(session.pk, django_settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS + 1)

    reply = declare(owner_api, data)
    assert reply.status_code == 201
    assert reply.json()["id"] != str(session.pk)
    assert reply.json()["received"] == 0
    assert UploadSession.objects.get(pk=session.pk).state == UploadSession.State.EXPIRED


def test_command_expires_stale_uploads(half_sent, capsys):
    _data, session = half_sent
    age(session.pk, django_settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS + 1)

    call_command("expire_uploads")
    assert "expired 1 open uploads" in capsys.readouterr().out
    assert UploadSession.objects.get().state == UploadSession.State.EXPIRED


def test_beat_schedule_runs_the_expiry_task(half_sent):
    entry = django_settings.CELERY_BEAT_SCHEDULE["expire-upload-sessions"]
    assert entry["task"] == expire_upload_sessions.name
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] <= django_settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS * 3600

    _data, session = half_sent
    age(session.pk, django_settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS + 1)
    assert expire_upload_sessions.delay().get() == 1


def test_agent_starts_again_after_expiry(live_server, owner, tmp_path, monkeypatch, caplog):
    """The upload expires after the agent's first range; the agent opens a new upload and sends the whole file."""
    data = tar_bytes({"workloads/a/steps.jsonl": bytes(range(256)) * 12_000})  # about 3 MiB: three ranges of 1 MiB
    path = tmp_path / "run.tar"
    path.write_bytes(data)
    real_request = requests.request
    puts = []

    def request_then_expire(method, url, **kwargs):
        reply = real_request(method, url, **kwargs)
        if method == "put":
            puts.append(url)
            if len(puts) == 1:
                age(UploadSession.objects.get().pk, django_settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS + 1)
        return reply

    monkeypatch.setattr("agent.commands.upload.requests.request", request_then_expire)
    token = Token.objects.create(user=owner).key
    code = main(["upload", str(path), "--portal", live_server.url, "--token", token, "--chunk-mib", "1"])

    assert code == EXIT_OK
    assert "expired the open upload" in caplog.text
    assert Submission.objects.get().bundle.read() == data
    states = sorted(UploadSession.objects.values_list("state", flat=True))
    assert states == [UploadSession.State.COMPLETED, UploadSession.State.EXPIRED]
    assert len(puts) == 5  # one range to the first upload, the refused second range, three ranges to the new one
