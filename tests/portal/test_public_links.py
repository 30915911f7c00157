"""Absolute links in feeds, PDFs and credentials: PORTAL_BASE_URL when set, else the request's checked host."""

import importlib
import importlib.util
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from django.apps import apps
from django.urls import reverse

from certification.credentials import payload_of, signing_key_ids
from portal.certificates.credentials import check_credential, mark_key_compromised, rotate_credential_key
from portal.certificates.models import Certificate
from portal.certificates.pdf import verification_url
from portal.certificates.services import issue_certificate, revoke_certificate

from .helpers_verdict import judged_submission, verdict


def feed_urls(client, name: str, key: str, **headers) -> set[str]:
    response = client.get(reverse(name), **headers)
    assert response.status_code == 200
    return {row["url"] for row in response.json()[key]}


def test_feed_uses_base_url_setting(client, certificate, settings):
    settings.PORTAL_BASE_URL = "https://cert.example.org"
    urls = feed_urls(client, "feed-json", "certificates", HTTP_HOST="127.0.0.1:8765")
    assert urls == {f"https://cert.example.org/certificates/{certificate.number}/"}


def test_feed_without_setting_uses_request_host(client, certificate, settings):
    settings.PORTAL_BASE_URL = ""
    urls = feed_urls(client, "feed-json", "certificates", HTTP_HOST="127.0.0.1:8765")
    assert urls == {f"http://127.0.0.1:8765/certificates/{certificate.number}/"}


def test_csv_feed_without_setting_uses_request_host(client, certificate, settings):
    settings.PORTAL_BASE_URL = ""
    response = client.get(reverse("feed-csv"), HTTP_HOST="localhost:9000")
    assert f"http://localhost:9000/certificates/{certificate.number}/" in response.content.decode("utf-8")


def test_revocation_feed_uses_request_host(client, certificate, staff, settings):
    settings.PORTAL_BASE_URL = ""
    revoke_certificate(certificate, reason="test", revoked_by=staff)
    urls = feed_urls(client, "revocation-list-json", "revoked", HTTP_HOST="127.0.0.1:8765")
    assert urls == {f"http://127.0.0.1:8765/certificates/{certificate.number}/"}


def test_unlisted_host_is_rejected(client, certificate, settings):
    settings.PORTAL_BASE_URL = ""
    response = client.get(reverse("feed-json"), HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert b"evil.example.com/certificates" not in response.content


def test_credential_url_uses_setting(certificate, settings, vendor, card, rule_pack, staff):
    settings.PORTAL_BASE_URL = "https://cert.example.org"
    issued = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(), label="b"), track="finetuning", level=1, issued_by=staff)
    assert check_credential(issued.credential)["verification_url"] == f"https://cert.example.org/certificates/{issued.number}/"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_pdf_link_without_setting_uses_request_host(client, certificate, settings, tmp_path):
    settings.PORTAL_BASE_URL = ""
    response = client.get(reverse("certificate-pdf", args=[certificate.number]), HTTP_HOST="127.0.0.1:8765")
    assert response.status_code == 200
    path = tmp_path / "certificate.pdf"
    path.write_bytes(response.content)
    text = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout
    text = "".join(text.split())  # the link wraps at the width of the QR code's column
    assert f"http://127.0.0.1:8765/certificates/{certificate.number}/" in text
    assert "127.0.0.1:8000" not in text


def load_demo_script():
    spec = importlib.util.spec_from_file_location("demo_script", Path(__file__).resolve().parents[2] / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_restart_command_keeps_links(client, certificate, settings):
    words = shlex.split(load_demo_script().restart_command(8765))
    environment = dict(word.split("=", 1) for word in words if "=" in word and not word.startswith("-"))
    assert "127.0.0.1:8765" in words
    settings.PORTAL_BASE_URL = environment["PORTAL_BASE_URL"]
    urls = feed_urls(client, "feed-json", "certificates", HTTP_HOST="localhost:8765")
    assert urls == {f"http://127.0.0.1:8765/certificates/{certificate.number}/"}


def pdf_text(client, number: str, tmp_path) -> str:
    """Return the text of a certificate's PDF with the white space removed, because the link wraps."""
    response = client.get(reverse("certificate-pdf", args=[number]), HTTP_HOST="127.0.0.1:8765")
    assert response.status_code == 200
    path = tmp_path / "certificate.pdf"
    path.write_bytes(response.content)
    text = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout
    return "".join(text.split())


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_pdf_keeps_link_signed_at_issue(client, settings, vendor, card, rule_pack, staff, tmp_path):
    settings.PORTAL_BASE_URL = "http://127.0.0.1:8000"
    issued = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(), label="b"), track="finetuning", level=1, issued_by=staff)
    settings.PORTAL_BASE_URL = "http://127.0.0.1:8001"

    text = pdf_text(client, issued.number, tmp_path)

    signed = check_credential(issued.credential)["verification_url"]
    assert signed == f"http://127.0.0.1:8000/certificates/{issued.number}/"
    assert signed in text
    assert "127.0.0.1:8001" not in text


def test_resigned_credential_keeps_link(settings, vendor, card, rule_pack, staff, tmp_path):
    settings.PORTAL_CREDENTIAL_KEY_PATH = tmp_path / "keys" / "portal.key"
    settings.PORTAL_BASE_URL = "https://cert.example.org"
    issued = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(), label="b"), track="finetuning", level=1, issued_by=staff)
    rotation = rotate_credential_key()
    settings.PORTAL_BASE_URL = "https://moved.example.org"

    mark_key_compromised(rotation.old_key_id, reason="test")

    issued.refresh_from_db()
    assert signing_key_ids(issued.credential) == [rotation.new_key_id]
    assert check_credential(issued.credential)["verification_url"] == f"https://cert.example.org/certificates/{issued.number}/"


def test_migration_stores_signed_link(certificate):
    migration = importlib.import_module("portal.certificates.migrations.0007_certificate_verification_url")
    signed = payload_of(certificate.credential)["verification_url"]
    Certificate.objects.filter(pk=certificate.pk).update(verification_url="")

    migration.copy_signed_links(apps, None)

    certificate.refresh_from_db()
    assert certificate.verification_url == signed


def test_path_link_under_later_base_url(settings, vendor, card, rule_pack, staff, rf):
    settings.PORTAL_BASE_URL = ""
    issued = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(), label="b"), track="finetuning", level=1, issued_by=staff)
    request = rf.get("/", HTTP_HOST="127.0.0.1:8765")

    before = verification_url(issued, request)
    settings.PORTAL_BASE_URL = "https://cert.example.org"
    after = verification_url(issued, request)

    assert issued.verification_url == f"/certificates/{issued.number}/"
    assert before == f"http://127.0.0.1:8765/certificates/{issued.number}/"
    assert after == f"https://cert.example.org/certificates/{issued.number}/"
