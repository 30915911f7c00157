"""The same bundle uploaded again: a rejection whose cause can have been fixed since is validated again, others are answered as before."""

import pytest
from django.urls import reverse

from certification.signing import generate_key
from portal.audit.models import AuditEntry
from portal.registry.services import register_signing_key
from portal.submissions.models import Submission, SupersededReport
from portal.submissions.services import add_reference

from .conftest import build_bundle, login, upload_file

BUNDLES_URL = "/api/v1/bundles/"
UPLOADS_URL = "/api/v1/uploads/"


@pytest.fixture
def add_demo_reference(tmp_path, rule_pack, lab_key):
    def add():
        path = build_bundle(tmp_path, lab_key, name="reference.tar", vendor="reference-lab", model="CPU", serial="ref-0")
        return add_reference(path, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})[0]
    return add


def post_bundle(api, path, callbacks, **headers):
    with callbacks(execute=True):
        return api.post(BUNDLES_URL, {"bundle": upload_file(path.read_bytes())}, format="multipart", **headers)


def declare(api, path, callbacks):
    import hashlib

    data = path.read_bytes()
    with callbacks(execute=True):
        return api.post(UPLOADS_URL, {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "name": path.name}, format="json")


def error_code(submission_id: int) -> str:
    """Return the stored rejection code; the reply is built before the on-commit validation runs in these tests."""
    return Submission.objects.get(pk=submission_id).report.error_code


def test_unknown_key_then_registered_validates_again(tmp_path, owner_api, vendor, card, rule_pack, add_demo_reference,
                                                     django_capture_on_commit_callbacks):
    add_demo_reference()
    key = generate_key()
    path = build_bundle(tmp_path, key)
    first = post_bundle(owner_api, path, django_capture_on_commit_callbacks)
    assert first.status_code == 201
    assert error_code(first.json()["id"]) == "signature_key_unknown"

    register_signing_key(vendor, key.public_pem())
    second = post_bundle(owner_api, path, django_capture_on_commit_callbacks)

    body = second.json()
    assert second.status_code == 200
    assert body["id"] == first.json()["id"]
    assert body["notice_code"] == "bundle_revalidating"
    assert "signature_key_unknown" in body["notice"]
    assert error_code(body["id"]) != "signature_key_unknown"
    assert Submission.objects.get().state == Submission.State.JUDGED
    assert Submission.objects.count() == 1
    earlier = SupersededReport.objects.get(submission_id=body["id"])
    assert earlier.error_code == "signature_key_unknown"
    assert earlier.state == Submission.State.REJECTED
    entry = AuditEntry.objects.get(action="submission.revalidation_requested")
    assert entry.data["reason"] == "uploaded_again"
    assert entry.data["previous_error_code"] == "signature_key_unknown"


def test_missing_reference_then_added_validates_again(tmp_path, owner_api, vendor, card, vendor_key, rule_pack, add_demo_reference,
                                                      django_capture_on_commit_callbacks):
    path = build_bundle(tmp_path, vendor_key)
    first = post_bundle(owner_api, path, django_capture_on_commit_callbacks)
    assert error_code(first.json()["id"]) == "reference_missing"

    add_demo_reference()
    declared = declare(owner_api, path, django_capture_on_commit_callbacks)

    submission = declared.json()["submission"]
    assert declared.status_code == 200
    assert submission["id"] == first.json()["id"]
    assert submission["notice_code"] == "bundle_revalidating"
    assert Submission.objects.get().state == Submission.State.JUDGED
    assert SupersededReport.objects.get().error_code == "reference_missing"


def test_lasting_rejection_is_answered_as_before(tmp_path, owner_api, vendor, card, vendor_key, add_demo_reference,
                                                 django_capture_on_commit_callbacks):
    add_demo_reference()
    path = build_bundle(tmp_path, vendor_key, vendor="globex")
    assert error_code(post_bundle(owner_api, path, django_capture_on_commit_callbacks).json()["id"]) == "vendor_mismatch"

    again = post_bundle(owner_api, path, django_capture_on_commit_callbacks)

    assert again.status_code == 200
    assert again.json()["notice_code"] == "bundle_already_uploaded"
    assert again.json()["error_code"] == "vendor_mismatch"
    assert error_code(again.json()["id"]) == "vendor_mismatch"
    assert not SupersededReport.objects.exists()
    assert not AuditEntry.objects.filter(action="submission.revalidation_requested").exists()


def test_judged_bundle_again_is_left_alone(tmp_path, owner_api, vendor, card, vendor_key, add_demo_reference,
                                           django_capture_on_commit_callbacks):
    add_demo_reference()
    path = build_bundle(tmp_path, vendor_key)
    post_bundle(owner_api, path, django_capture_on_commit_callbacks)
    assert Submission.objects.get().state == Submission.State.JUDGED

    again = declare(owner_api, path, django_capture_on_commit_callbacks)

    assert again.json()["submission"]["notice_code"] == "bundle_already_uploaded"
    assert not SupersededReport.objects.exists()


def test_new_upload_has_no_notice(tmp_path, owner_api, vendor, card, vendor_key, django_capture_on_commit_callbacks):
    body = post_bundle(owner_api, build_bundle(tmp_path, vendor_key), django_capture_on_commit_callbacks).json()

    assert body["notice_code"] == ""
    assert body["notice"] == ""


@pytest.mark.parametrize("language, notice, earlier", [
    ("en", "This bundle was already uploaded as submission", "Earlier verdicts"),
    ("zh-hans", "此结果包已作为提交", "早先的评判结果"),
])
def test_browser_form_tells_and_keeps_rejection(tmp_path, client, owner, vendor, card, rule_pack, add_demo_reference,
                                                django_capture_on_commit_callbacks, language, notice, earlier):
    add_demo_reference()
    key = generate_key()
    data = build_bundle(tmp_path, key).read_bytes()
    login(client, owner)
    form = {"vendor": vendor.slug, "bundle": upload_file(data)}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("submission-upload"), form)
    register_signing_key(vendor, key.public_pem())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("submission-upload"), {"vendor": vendor.slug, "bundle": upload_file(data)},
                               HTTP_ACCEPT_LANGUAGE=language, follow=True)

    page = response.content.decode()
    assert response.status_code == 200
    assert "bundle_revalidating" in page
    assert notice in page
    assert earlier in page
    assert "signature_key_unknown" in page
    assert Submission.objects.count() == 1
