"""Who may see which page: the vendor owner, a member of another vendor, an anonymous visitor, staff."""

import pytest
from django.urls import reverse

from .conftest import login, tar_bytes, upload_file
from .helpers_verdict import judged_submission, verdict


@pytest.fixture
def submission(vendor, card, rule_pack):
    return judged_submission(vendor, card, rule_pack, verdict())


def persona_client(client, persona, request):
    if persona == "anonymous":
        return client
    return login(client, request.getfixturevalue(persona))


# (page, persona, expected status); 302 is the redirect to the login page.
MATRIX = [
    ("list", "owner", 200), ("list", "outsider", 200), ("list", "staff", 200), ("list", "anonymous", 302),
    ("detail", "owner", 200), ("detail", "outsider", 404), ("detail", "staff", 200), ("detail", "anonymous", 302),
    ("upload", "owner", 200), ("upload", "outsider", 200), ("upload", "staff", 200), ("upload", "anonymous", 302),
    ("queue", "owner", 403), ("queue", "outsider", 403), ("queue", "staff", 200), ("queue", "anonymous", 302),
    ("public", "owner", 200), ("public", "outsider", 200), ("public", "staff", 200), ("public", "anonymous", 200),
]


def page_url(page, submission):
    return {
        "list": reverse("submission-list"),
        "detail": reverse("submission-detail", args=[submission.pk]),
        "upload": reverse("submission-upload"),
        "queue": reverse("staff-queue"),
        "public": reverse("certificate-list"),
    }[page]


@pytest.mark.parametrize("page, persona, status", MATRIX)
def test_page_permissions(client, request, submission, outsider, staff, page, persona, status):
    response = persona_client(client, persona, request).get(page_url(page, submission))
    assert response.status_code == status
    if status == 302:
        assert response["Location"].startswith(reverse("login"))


def test_outsider_list_hides_other_vendor(client, submission, outsider):
    response = login(client, outsider).get(reverse("submission-list"))
    assert reverse("submission-detail", args=[submission.pk]) not in response.content.decode()


def test_detail_shows_report_and_banner(client, submission, owner):
    page = login(client, owner).get(reverse("submission-detail", args=[submission.pk])).content.decode()
    assert "CPU 演示参考结果 / CPU demo reference" in page
    assert "demo-2026.1" in page
    assert "pretrain.throughput" in page
    assert "吞吐比 &lt;b&gt;达标&lt;/b&gt;" in page
    assert "检查解码" in page


def test_detail_in_english(client, submission, owner):
    login(client, owner)
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    page = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()
    assert "Validation report" in page
    assert "check decoding" in page


@pytest.mark.parametrize("language, expected", [("zh-hans", "10 个窗口均值"), ("en", "10 window means")])
def test_loss_alignment_reference_in_words(client, owner, vendor, card, rule_pack, language, expected):
    payload = verdict()
    payload["criteria"].append({
        "id": "pretrain.loss_alignment", "workload": "pretrain-llama", "metric": "loss_alignment", "status": "pass",
        "measured": {"mean_relative_error": 0.0, "max_relative_error": 0.0}, "reference": {"window_means": 10},
        "bound": {"mean_relative_error_max": 0.02, "max_relative_error_max": 0.05},
        "explanation": {"zh": "", "en": ""}, "hint": {"zh": "", "en": ""}, "details": {},
    })
    submission = judged_submission(vendor, card, rule_pack, payload)
    login(client, owner)
    client.cookies["django_language"] = language
    page = client.get(reverse("submission-detail", args=[submission.pk]), HTTP_ACCEPT_LANGUAGE=language).content.decode()

    assert f"<td>{expected}</td>" in page
    assert "window_means" not in page


def test_chinese_is_default(client, db):
    page = client.get(reverse("certificate-list")).content.decode()
    assert 'lang="zh-hans"' in page
    assert "已认证" in page


def test_browser_upload(client, owner, vendor, monkeypatch):
    monkeypatch.setattr("portal.submissions.services.enqueue_validation", lambda submission_id: None)
    login(client, owner)
    response = client.post(reverse("submission-upload"), {"vendor": vendor.slug, "bundle": upload_file(tar_bytes())})
    assert response.status_code == 302
    assert vendor.submissions.count() == 1


def test_browser_upload_rejects_non_archive(client, owner, vendor):
    login(client, owner)
    response = client.post(reverse("submission-upload"), {"vendor": vendor.slug, "bundle": upload_file(b"hello", "hello.txt")})
    assert response.status_code == 400
    assert "bundle_not_archive" in response.content.decode()


def test_vendor_name_is_escaped(client, submission, owner):
    page = login(client, owner).get(reverse("submission-detail", args=[submission.pk])).content.decode()
    assert "Acme &lt;b&gt;芯片&lt;/b&gt;" in page
