"""Who may open which page or call which endpoint: one table over every page and endpoint of the portal core.

Personas: `owner` (member of the submission's vendor), `outsider` (member of
another vendor), `anonymous`, `reviewer` (certification staff) and
`administrator` (staff administrator). 302 on a page is the redirect to the
login page; 404 hides another vendor's records.
"""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from portal.registry.models import Card
from portal.submissions.models import UploadSession

from .helpers_verdict import judged_submission, verdict

PERSONAS = ["owner", "outsider", "anonymous", "reviewer", "administrator"]


def row(method, name, *expected):
    return [(method, name, persona, status) for persona, status in zip(PERSONAS, expected, strict=True)]


PAGES = [
    *row("get", "certificate-list", 200, 200, 200, 200, 200),
    *row("get", "submission-list", 200, 200, 302, 200, 200),
    *row("get", "submission-detail", 200, 404, 302, 200, 200),
    *row("get", "submission-plot", 200, 404, 302, 200, 200),
    *row("get", "submission-upload", 200, 200, 302, 200, 200),
    *row("get", "card-list", 200, 200, 302, 200, 200),
    *row("get", "key-list", 200, 200, 302, 200, 200),
    *row("get", "staff-queue", 403, 403, 302, 200, 200),
    *row("get", "audit-log", 403, 403, 302, 200, 200),
    *row("get", "staff-cards", 403, 403, 302, 403, 200),
    *row("get", "reference-list", 403, 403, 302, 403, 200),
    *row("post", "staff-card-approve", 403, 403, 302, 403, 302),
]

ENDPOINTS = [
    *row("get", "api-schema", 200, 200, 200, 200, 200),  # the API description is public
    *row("post", "api-bundle-upload", 400, 400, 401, 403, 403),
    *row("post", "api-upload-create", 400, 400, 401, 403, 403),
    *row("get", "api-upload-session", 200, 404, 401, 404, 404),
    *row("put", "api-upload-session", 400, 404, 401, 404, 404),
    *row("post", "api-upload-complete", 409, 404, 401, 404, 404),
]


@pytest.fixture
def records(vendor, owner, card, rule_pack):
    submission = judged_submission(vendor, card, rule_pack, verdict())
    pending = Card.objects.create(vendor=vendor, model="X200", serial="sn-2", peak_tflops={"bf16": 100.0}, peak_source="datasheet v1 p. 3")
    session = UploadSession.objects.create(vendor=vendor, created_by=owner, size=10, sha256="a" * 64)
    return {"submission": submission, "card": pending, "session": session}


def url_of(name, records):
    arguments = {
        "submission-detail": [records["submission"].pk],
        "submission-plot": [records["submission"].pk, 0],
        "staff-card-approve": [records["card"].pk],
        "api-upload-session": [records["session"].pk],
        "api-upload-complete": [records["session"].pk],
    }
    return reverse(name, args=arguments.get(name, []))


@pytest.fixture
def personas(owner, outsider, staff, administrator):
    return {"owner": owner, "outsider": outsider, "reviewer": staff, "administrator": administrator, "anonymous": None}


@pytest.mark.parametrize("method, name, persona, status", PAGES)
def test_page(client, records, personas, method, name, persona, status):
    if personas[persona] is not None:
        client.force_login(personas[persona])
    response = getattr(client, method)(url_of(name, records))
    assert response.status_code == status
    if status == 302 and persona == "anonymous":
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("method, name, persona, status", ENDPOINTS)
def test_endpoint(records, personas, method, name, persona, status):
    client = APIClient()
    if personas[persona] is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=personas[persona]).key}")
    response = getattr(client, method)(url_of(name, records), format="json")
    assert response.status_code == status
    if status >= 400:
        assert response.json()["code"]


def test_bad_token_is_refused_with_a_code(records):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = client.post(reverse("api-upload-create"), {"size": 10, "sha256": "b" * 64}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert UploadSession.objects.count() == 1


def test_card_approval_only_by_administrator_leaves_card_untouched(client, records, staff):
    client.force_login(staff)
    client.post(url_of("staff-card-approve", records))
    records["card"].refresh_from_db()
    assert records["card"].approved is False
