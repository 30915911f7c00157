"""`python -m agent upload` against a live portal on the loopback interface."""

import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from agent.cli import main
from agent.commands.upload import TOKEN_ADMIN_PATH, WEB_UPLOAD_PATH
from agent.errors import EXIT_OK, EXIT_REMOTE, EXIT_USAGE
from portal.submissions.models import Submission

from .conftest import make_user, tar_bytes


@pytest.fixture
def token(owner):
    return Token.objects.create(user=owner).key


@pytest.fixture
def bundle_file(tmp_path):
    path = tmp_path / "run.bundle.tar"
    path.write_bytes(tar_bytes())
    return path


@pytest.fixture(autouse=True)
def no_pipeline(monkeypatch):
    monkeypatch.setattr("portal.submissions.services.enqueue_validation", lambda submission_id: None)


def test_upload_prints_submission_url(live_server, token, bundle_file, capsys):
    assert main(["upload", str(bundle_file), "--portal", live_server.url, "--token", token]) == EXIT_OK
    submission = Submission.objects.get()
    output = capsys.readouterr()
    assert f"{live_server.url}/submissions/{submission.pk}/" in output.out
    assert token not in output.out + output.err


def test_upload_twice_returns_same_submission(live_server, token, bundle_file, capsys):
    main(["upload", str(bundle_file), "--portal", live_server.url, "--token", token])
    assert main(["--lang", "en", "upload", str(bundle_file), "--portal", live_server.url, "--token", token]) == EXIT_OK
    submission = Submission.objects.get()
    assert f"the portal already has this bundle as submission {submission.pk}, so it made no new submission" in capsys.readouterr().out


@pytest.mark.parametrize("language, notice", [
    ("en", "so the portal validates the submission again"),
    ("zh", "因此门户重新验证该提交"),
])
def test_upload_again_after_fixable_rejection(live_server, owner, vendor, token, bundle_file, capsys, language, notice):
    from portal.submissions.models import ValidationReport

    main(["upload", str(bundle_file), "--portal", live_server.url, "--token", token])
    submission = Submission.objects.get()
    ValidationReport.objects.create(submission=submission, error_code="reference_missing", error_params={"name": "demo-2026.1"})
    Submission.objects.filter(pk=submission.pk).update(state=Submission.State.REJECTED)
    capsys.readouterr()

    assert main(["--lang", language, "upload", str(bundle_file), "--portal", live_server.url, "--token", token]) == EXIT_OK

    output = capsys.readouterr().out
    assert notice in output
    assert "reference_missing" in output
    assert Submission.objects.get().state == Submission.State.RECEIVED


def test_upload_stored_bundle_sends_nothing(live_server, token, bundle_file, capsys, caplog):
    main(["upload", str(bundle_file), "--portal", live_server.url, "--token", token, "--json"])
    capsys.readouterr()
    caplog.clear()

    assert main(["--lang", "en", "upload", str(bundle_file), "--portal", live_server.url, "--token", token, "--json"]) == EXIT_OK

    output = capsys.readouterr()
    submission = Submission.objects.get()
    assert f"the portal already has this bundle as submission {submission.pk}" in output.err
    assert json.loads(output.out)["already_stored"] is True
    assert "completing" not in caplog.text
    assert "bytes of the open upload" not in caplog.text


def test_upload_reads_environment(live_server, token, bundle_file, monkeypatch, capsys):
    monkeypatch.setenv("AGENT_PORTAL_URL", live_server.url)
    monkeypatch.setenv("AGENT_PORTAL_TOKEN", token)
    assert main(["upload", str(bundle_file)]) == EXIT_OK
    assert Submission.objects.count() == 1


@pytest.mark.parametrize("extra", [[], ["--single-request"]])
def test_upload_bad_token(live_server, owner, bundle_file, capsys, extra):
    secret = "f" * 40
    assert main(["--lang", "en", "upload", str(bundle_file), "--portal", live_server.url, "--token", secret, *extra]) == EXIT_REMOTE
    output = capsys.readouterr()
    assert "error[upload_rejected]" in output.err
    assert "authentication_failed" in output.err
    assert "--token TOKEN" in output.err
    assert "AGENT_PORTAL_TOKEN" in output.err
    assert f"{live_server.url}{reverse('admin:authtoken_tokenproxy_changelist')}" in output.err
    assert f"{live_server.url}{reverse('submission-upload')}" in output.err
    assert secret not in output.out + output.err


def test_upload_hint_names_pages():
    # The hint's paths are the portal's own pages.
    assert TOKEN_ADMIN_PATH == reverse("admin:authtoken_tokenproxy_changelist")
    assert WEB_UPLOAD_PATH == reverse("submission-upload")


def test_non_member_gets_no_token_hint(live_server, db, bundle_file, capsys):
    # A valid token of a user who belongs to no vendor: the portal returns 403 vendor_membership_missing.
    token = Token.objects.create(user=make_user("loner")).key

    assert main(["--lang", "en", "upload", str(bundle_file), "--portal", live_server.url, "--token", token]) == EXIT_REMOTE

    error = capsys.readouterr().err
    assert "HTTP 403 [vendor_membership_missing]" in error
    assert "AGENT_PORTAL_TOKEN" not in error


def test_upload_portal_unreachable(bundle_file, capsys):
    assert main(["upload", str(bundle_file), "--portal", "http://127.0.0.1:9", "--token", "t"]) == EXIT_REMOTE
    assert "error[portal_unreachable]" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, code", [
    (["--token", "t"], "portal_url_missing"),
    (["--portal", "http://127.0.0.1:9"], "portal_token_missing"),
])
def test_upload_missing_settings(bundle_file, monkeypatch, capsys, arguments, code):
    monkeypatch.delenv("AGENT_PORTAL_URL", raising=False)
    monkeypatch.delenv("AGENT_PORTAL_TOKEN", raising=False)
    assert main(["upload", str(bundle_file), *arguments]) == EXIT_USAGE
    assert f"error[{code}]" in capsys.readouterr().err


def test_upload_missing_file(tmp_path, capsys):
    assert main(["upload", str(tmp_path / "none.tar"), "--portal", "http://127.0.0.1:9", "--token", "t"]) == EXIT_USAGE
    assert "error[bundle_not_found]" in capsys.readouterr().err


def test_upload_streams_large_bundle(live_server, token, tmp_path, capsys):
    data = tar_bytes({"workloads/a/steps.jsonl": bytes(range(256)) * 12_000})
    path = tmp_path / "large.tar"
    path.write_bytes(data)
    assert main(["upload", str(path), "--portal", live_server.url, "--token", token]) == EXIT_OK
    assert Submission.objects.get().bundle.read() == data
