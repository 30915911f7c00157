"""Control characters in URLs, searches and staff text: a clear 4xx, never a database error (PostgreSQL text cannot hold NUL)."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from portal.certificates.models import Certificate

from .conftest import login


@pytest.mark.parametrize("url", [
    "/certificates/A%00B/", "/certificates/A%00B/pdf/", "/certificates/A%00B/credential.json",
    "/certificates/verify/?number=A%00B", "/certificates/verify/?number=A%1BB",
])
def test_certificate_number_with_control_character_not_found(client, db, url):
    assert client.get(url).status_code == 404


def test_ticket_id_with_control_character_not_found(client, owner):
    login(client, owner)
    assert client.get("/tickets/a%00b/download/").status_code == 404


@pytest.mark.parametrize("url, name", [
    ("/staff/queue/?q=a%00b", "q"),
    ("/staff/audit/?q=a%00b", "q"),
    ("/staff/audit/?action=submission.%00", "action"),
])
def test_staff_search_with_control_character(client, staff, url, name):
    login(client, staff)
    response = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    page = response.content.decode()
    assert response.status_code == 400
    assert f"The search {name}=" in page
    assert "U+0000" in page


def test_staff_search_error_in_chinese(client, staff):
    login(client, staff)
    response = client.get("/staff/queue/?q=a%00b", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 400
    assert "控制字符 U+0000" in response.content.decode()


@pytest.mark.parametrize("reason", ["key\x00leaked", "key\x1bleaked"])
def test_revocation_reason_with_control_character(client, staff, certificate, reason):
    login(client, staff)
    response = client.post(reverse("certificate-revoke", args=[certificate.number]), {"reason": reason})

    assert response.status_code == 302
    assert any("[reason_invalid]" in str(message) for message in get_messages(response.wsgi_request))
    assert Certificate.objects.get(pk=certificate.pk).revoked_at is None


def test_revocation_reason_keeps_line_breaks(client, staff, certificate):
    login(client, staff)
    client.post(reverse("certificate-revoke", args=[certificate.number]), {"reason": "key leaked\r\nsee the notice"})

    assert Certificate.objects.get(pk=certificate.pk).revoked_reason == "key leaked\r\nsee the notice"
