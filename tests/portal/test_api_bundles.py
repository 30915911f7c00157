import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from portal.audit.models import AuditEntry
from portal.submissions.models import Submission

from .conftest import tar_bytes, upload_file

URL = "/api/v1/bundles/"


@pytest.fixture
def no_pipeline(monkeypatch):
    """Keep uploads in state received: these tests cover the API, not the validation."""
    monkeypatch.setattr("portal.submissions.services.enqueue_validation", lambda submission_id: None)


def post(client, data: bytes, name="run.tar"):
    return client.post(URL, {"bundle": upload_file(data, name)}, format="multipart")


def test_upload_creates_submission(owner_api, vendor, no_pipeline, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(owner_api, tar_bytes())
    assert response.status_code == 201
    body = response.json()
    submission = Submission.objects.get(pk=body["id"])
    assert body["state"] == "received"
    assert body["url"].endswith(reverse("submission-detail", args=[submission.pk]))
    assert submission.vendor == vendor
    assert submission.bundle.read() == tar_bytes()
    assert len(callbacks) == 1
    assert AuditEntry.objects.filter(action="submission.received", object_id=str(submission.pk)).count() == 1


def test_upload_twice_is_one_submission(owner_api, no_pipeline):
    first = post(owner_api, tar_bytes())
    second = post(owner_api, tar_bytes(), name="again.tar")
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert Submission.objects.count() == 1


def test_same_bytes_from_two_vendors_are_two_submissions(owner_api, outsider, no_pipeline):
    from rest_framework.authtoken.models import Token

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=outsider).key}")
    assert post(owner_api, tar_bytes()).status_code == 201
    assert post(other, tar_bytes()).status_code == 201


@pytest.mark.parametrize("authorization, code", [
    (None, "not_authenticated"),
    ("Token 0000000000000000000000000000000000000000", "authentication_failed"),
    ("Bearer something", "not_authenticated"),
])
def test_upload_rejects_bad_token(db, authorization, code):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = post(client, tar_bytes())
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert Submission.objects.count() == 0


def test_upload_rejects_non_archive(owner_api, no_pipeline):
    response = post(owner_api, b"this is not a tar archive" * 40, name="notes.txt")
    assert response.status_code == 400
    assert response.json()["code"] == "bundle_not_archive"
    assert Submission.objects.count() == 0


def test_upload_rejects_empty_file(owner_api, no_pipeline):
    response = post(owner_api, b"", name="empty.tar")
    assert response.status_code == 400
    assert response.json()["code"] == "bundle_empty"
    assert "empty.tar" in response.json()["detail"]
    assert Submission.objects.count() == 0


def test_upload_rejects_missing_field(owner_api):
    response = owner_api.post(URL, {"other": upload_file(tar_bytes())}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "bundle_missing"


def test_upload_rejects_too_large(owner_api, settings, no_pipeline):
    settings.BUNDLE_UPLOAD_MAX_BYTES = 2048
    response = post(owner_api, tar_bytes({"big.bin": b"x" * 10_000}))
    assert response.status_code == 413
    assert response.json()["code"] == "bundle_too_large"
    assert Submission.objects.count() == 0


def test_upload_rejects_user_without_vendor(db):
    from rest_framework.authtoken.models import Token

    from .conftest import make_user

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('loner')).key}")
    response = post(client, tar_bytes())
    assert response.status_code == 403
    assert response.json()["code"] == "vendor_membership_missing"


def test_upload_rejects_foreign_vendor_field(owner_api, other_vendor, no_pipeline):
    response = owner_api.post(URL, {"bundle": upload_file(tar_bytes()), "vendor": other_vendor.slug}, format="multipart")
    assert response.status_code == 403
    assert response.json()["code"] == "vendor_not_member"


def test_schema_is_served(db):
    response = APIClient().get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/bundles/" in response.content
