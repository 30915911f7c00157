"""The 403, 404 and 500 pages: the site layout, in the request's language, with DEBUG off."""

import pytest
from django.test import Client
from django.urls import include, path, reverse

from .conftest import login


def broken_view(request):
    raise RuntimeError("a failure inside a view")


urlpatterns = [
    path("broken/", broken_view),
    path("", include("portal.urls")),
]


@pytest.fixture(autouse=True)
def production_like(settings):
    settings.DEBUG = False
    settings.ROOT_URLCONF = __name__


def get(client, url, language):
    client.cookies["django_language"] = language
    return client.get(url)


@pytest.mark.parametrize("language, title, text", [
    ("en", "Page not found", "does not exist, or your account cannot see it"),
    ("zh-hans", "页面不存在", "不存在，或者您的账号无权查看"),
])
def test_404_page(client, db, language, title, text):
    response = get(client, "/no/such/page/", language)
    page = response.content.decode()
    assert response.status_code == 404
    assert title in page
    assert text in page
    assert "/no/such/page/" in page
    assert 'class="site"' in page  # the site layout with its navigation and language switch


def test_404_for_another_vendors_submission(client, outsider, vendor, card, rule_pack):
    from .helpers_verdict import judged_submission

    submission = judged_submission(vendor, card, rule_pack, {"criteria": [], "tracks": {}})
    login(client, outsider)
    response = get(client, reverse("submission-detail", args=[submission.pk]), "en")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


@pytest.mark.parametrize("language, title, text", [
    ("en", "Access denied", "does not have the role this page needs"),
    ("zh-hans", "无权访问", "没有此页面所需的角色"),
])
def test_403_page(client, owner, language, title, text):
    login(client, owner)
    response = get(client, reverse("staff-queue"), language)
    page = response.content.decode()
    assert response.status_code == 403
    assert title in page
    assert text in page
    assert 'class="site"' in page
    assert "owner" in page  # rendered with the request: the signed-in user is shown


@pytest.mark.parametrize("language, title, text", [
    ("en", "Server error", "The portal failed to complete the request"),
    ("zh-hans", "服务器错误", "门户未能完成该请求"),
])
def test_500_page(db, language, title, text):
    client = Client(raise_request_exception=False)
    response = get(client, "/broken/", language)
    page = response.content.decode()
    assert response.status_code == 500
    assert title in page
    assert text in page
    assert "a failure inside a view" not in page
    assert 'class="site"' in page
