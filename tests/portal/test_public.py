"""Public pages without login: the listing, verification by number and the PDF."""

from django.urls import reverse

from portal.certificates.services import revoke_certificate


def test_listing_without_login(client, certificate):
    page = client.get(reverse("certificate-list")).content.decode()
    assert certificate.number in page
    assert "X100" in page
    assert "Acme &lt;b&gt;芯片&lt;/b&gt;" in page
    assert "demo-2026.1" in page
    assert "CPU demo reference" in page


def test_listing_marks_revoked(client, certificate, staff):
    revoke_certificate(certificate, reason="withdrawn", revoked_by=staff)
    page = client.get(reverse("certificate-list"), {"status": "valid"}).content.decode()
    assert certificate.number not in page
    page = client.get(reverse("certificate-list")).content.decode()
    assert certificate.number in page
    assert 'class="revoked"' in page


def test_verify_by_number(client, certificate):
    response = client.get(reverse("certificate-verify"), {"number": certificate.number}, follow=True)
    assert response.status_code == 200
    assert certificate.number in response.content.decode()


def test_verify_unknown_number(client, db):
    response = client.get(reverse("certificate-detail", args=["PPLM-2026-99999"]))
    assert response.status_code == 404


def test_verify_number_with_slash(client, db):
    response = client.get(reverse("certificate-verify"), {"number": "a/b"})

    assert response.status_code == 404
    assert "a/b" in response.content.decode()


def test_revoked_certificate_shows_revocation(client, certificate, staff):
    revoke_certificate(certificate, reason="withdrawn", revoked_by=staff)
    page = client.get(reverse("certificate-detail", args=[certificate.number])).content.decode()
    assert "withdrawn" in page


def test_issue_date_in_shanghai(client, certificate):
    from zoneinfo import ZoneInfo

    local = certificate.issued_at.astimezone(ZoneInfo("Asia/Shanghai"))
    page = client.get(reverse("certificate-detail", args=[certificate.number])).content.decode()
    assert local.strftime("%Y-%m-%d %H:%M") in page
