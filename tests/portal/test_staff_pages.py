"""Invalid query parameters of the staff queue and the audit log, and the page each role lands on after login."""

import pytest
from django.urls import reverse

from portal.audit import views as audit_views
from portal.audit.models import AuditEntry
from portal.submissions import views as submission_views

from .conftest import PASSWORD, login, make_user
from .helpers_verdict import judged_submission, verdict


@pytest.fixture
def two_submissions(vendor, card, rule_pack):
    """Two judged submissions, the second one newer."""
    return [judged_submission(vendor, card, rule_pack, verdict(), label=label) for label in ("one", "two")]


@pytest.fixture
def one_row_pages(monkeypatch):
    """Page the queue and the audit log by one row."""
    monkeypatch.setattr(submission_views, "QUEUE_PAGE_SIZE", 1)
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 1)


def english(client, user):
    login(client, user).cookies["django_language"] = "en"
    return client


@pytest.mark.parametrize("params, status, text", [
    ({"state": "nosuch"}, 400, "The filter state=&#x27;nosuch&#x27; is invalid and was ignored. Use one of: received, validating, judged, rejected."),
    ({"vendor": "nosuch"}, 400, "The filter vendor=&#x27;nosuch&#x27; is invalid and was ignored. Use one of: acme."),
    ({"page": "abc"}, 400, "The page &#x27;abc&#x27; is invalid. Use a whole number from 1 to 1. Page 1 is shown instead."),
    ({"page": "999"}, 404, "The page &#x27;999&#x27; does not exist: there is 1 page. Use page 1. Page 1 is shown instead."),
])
def test_queue_names_invalid_parameter(client, staff, two_submissions, params, status, text):
    response = english(client, staff).get(reverse("staff-queue"), params)
    page = response.content.decode()
    assert response.status_code == status
    assert text in page
    assert reverse("submission-detail", args=[two_submissions[0].pk]) in page


def test_queue_keeps_valid_states_beside_invalid(client, staff, two_submissions):
    response = english(client, staff).get(reverse("staff-queue") + "?state=rejected&state=nosuch")
    page = response.content.decode()
    assert response.status_code == 400
    assert "state=&#x27;nosuch&#x27;" in page
    assert reverse("submission-detail", args=[two_submissions[0].pk]) not in page
    assert "The queue is empty." in page


def test_queue_past_last_page_in_chinese(client, staff, two_submissions, one_row_pages):
    response = login(client, staff).get(reverse("staff-queue"), {"page": "999"})
    assert response.status_code == 404
    assert "页码 &#x27;999&#x27; 不存在：共有 2 页。请使用 1 到 2 之间的整数。 现在显示第 2 页。" in response.content.decode()


def test_queue_pages_keep_filters(client, staff, vendor, two_submissions, one_row_pages):
    response = english(client, staff).get(reverse("staff-queue"), {"state": "judged", "vendor": vendor.slug})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' not in page
    assert reverse("submission-detail", args=[two_submissions[1].pk]) in page
    assert reverse("submission-detail", args=[two_submissions[0].pk]) not in page
    assert "?state=judged&amp;vendor=acme&amp;q=&amp;page=2" in page
    second = client.get(reverse("staff-queue"), {"state": "judged", "vendor": vendor.slug, "page": "2"}).content.decode()
    assert reverse("submission-detail", args=[two_submissions[0].pk]) in second


@pytest.mark.parametrize("value, status, text", [
    ("0", 400, "The page &#x27;0&#x27; is invalid. Use a whole number from 1 to 2. Page 1 is shown instead."),
    ("999", 404, "The page &#x27;999&#x27; does not exist: there are 2 pages. Use a whole number from 1 to 2. Page 2 is shown instead."),
])
def test_audit_log_names_invalid_page(client, staff, one_row_pages, value, status, text):
    AuditEntry.objects.create(action="card.registered", actor_label="first")
    AuditEntry.objects.create(action="card.approved", actor_label="second")
    response = english(client, staff).get(reverse("audit-log"), {"page": value})
    assert response.status_code == status
    assert text in response.content.decode()


def test_audit_log_valid_page(client, staff, one_row_pages):
    AuditEntry.objects.create(action="card.registered", actor_label="first")
    AuditEntry.objects.create(action="card.approved", actor_label="second")
    response = english(client, staff).get(reverse("audit-log"), {"page": "2"})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' not in page
    assert "<code>card.registered</code>" in page


def post_login(client, username: str, next_url: str = ""):
    data = {"username": username, "password": PASSWORD}
    if next_url:
        data["next"] = next_url
    response = client.post(reverse("login"), data)
    assert response.status_code == 302
    return client.get(response["Location"])


def test_staff_land_on_queue_after_login(client, staff, owner):
    response = post_login(client, "staff")
    assert response.status_code == 302
    assert response["Location"] == reverse("staff-queue")


def test_vendor_lands_on_submissions_after_login(client, staff, owner):
    response = post_login(client, "owner")
    assert response.status_code == 302
    assert response["Location"] == reverse("submission-list")


def test_staff_without_review_role_land_on_submissions(client, db):
    make_user("clerk", is_staff=True)
    response = post_login(client, "clerk")
    assert response["Location"] == reverse("submission-list")


def test_login_keeps_next_address(client, staff, owner):
    response = post_login(client, "staff", next_url=reverse("audit-log"))
    assert response.status_code == 200
    assert response.request["PATH_INFO"] == reverse("audit-log")
