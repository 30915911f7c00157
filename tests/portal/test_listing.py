"""The public listing without login: filters, search, feeds, card history and the revocation list."""

import csv
import io

import pytest
from django.urls import reverse
from django.utils.html import escape

from portal.certificates import listing
from portal.certificates import views as certificate_views

from portal.certificates.services import issue_certificate, revoke_certificate
from portal.registry.models import Card, Vendor

from .helpers_verdict import judged_submission, verdict


@pytest.fixture
def listed(vendor, card, rule_pack, staff):
    other_vendor = Vendor.objects.create(slug="initech", name="=HYPERLINK(\"http://x\")")
    other_card = Card.objects.create(vendor=other_vendor, model="Z9", serial="z", peak_tflops={"fp32": 1.0}, approved=True)
    first = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(1, 1), label="a"), track="pretraining", level=1, issued_by=staff)
    second = issue_certificate(submission=judged_submission(other_vendor, other_card, rule_pack, verdict(1, 1), label="b"), track="finetuning", level=1, issued_by=staff)
    revoke_certificate(second, reason="datasheet peak was wrong", revoked_by=staff)
    return first, second


def rows_of(client, **params):
    return client.get(reverse("feed-json"), params).json()["certificates"]


def test_listing_shows_revoked_marked(client, listed):
    page = client.get(reverse("certificate-list")).content.decode()
    assert listed[0].number in page
    assert listed[1].number in page
    assert 'class="revoked"' in page


@pytest.mark.parametrize("params, expected", [
    ({"track": "pretraining"}, [0]),
    ({"track": "finetuning"}, [1]),
    ({"status": "valid"}, [0]),
    ({"status": "revoked"}, [1]),
    ({"q": "x100"}, [0]),
    ({"q": "HYPERLINK"}, [1]),
    ({"vendor": "acme"}, [0]),
    ({"level": "2"}, []),
    ({"status": "all"}, [0, 1]),
])
def test_feed_filters(client, listed, params, expected):
    numbers = {row["number"] for row in rows_of(client, **params)}
    assert numbers == {listed[index].number for index in expected}


def test_listing_page_filters_by_search(client, listed):
    page = client.get(reverse("certificate-list"), {"q": "X100"}).content.decode()
    assert listed[0].number in page
    assert listed[1].number not in page


def test_csv_feed_neutralises_formulas(client, listed):
    response = client.get(reverse("feed-csv"))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    vendors = {row["vendor"] for row in rows}
    assert "'=HYPERLINK(\"http://x\")" in vendors
    assert {row["status"] for row in rows} == {"valid", "revoked"}


def test_card_page_history_in_time_order(client, listed, card, vendor, rule_pack):
    judged_submission(vendor, card, rule_pack, verdict(0, 0), label="later")
    page = client.get(reverse("card-detail", args=[card.pk])).content.decode()
    first_submission = page.index("event-submission")
    certificate = page.index("event-certificate")
    assert first_submission < certificate
    assert page.count("event-submission") == 2
    assert "<svg" in page


@pytest.mark.parametrize("language, names, raw", [
    ("zh-hans", ["调优", "预训练", "推理"], ["finetuning", "pretraining", "inference"]),
    ("en", ["fine-tuning", "pretraining", "inference"], ["finetuning"]),
])
def test_card_history_legend_in_page_language(client, listed, card, language, names, raw):
    client.cookies["django_language"] = language
    page = client.get(reverse("card-detail", args=[card.pk]), HTTP_ACCEPT_LANGUAGE=language).content.decode()
    chart = page[page.index("<svg"):page.index("</svg>")]

    for name in names:
        assert f">{name}</text>" in chart
    for track_id in raw:
        assert f">{track_id}<" not in chart


def test_revocation_list_page_and_json(client, listed):
    page = client.get(reverse("revocation-list")).content.decode()
    assert listed[1].number in page
    assert "datasheet peak was wrong" in page
    data = client.get(reverse("revocation-list-json")).json()
    assert [row["number"] for row in data["revoked"]] == [listed[1].number]
    assert data["revoked"][0]["revoked_reason"] == "datasheet peak was wrong"


def test_plot_is_svg(client, listed):
    response = client.get(reverse("feed-plot"))
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")


@pytest.mark.parametrize("language, names, raw", [
    ("zh-hans", ["调优", "预训练", "推理"], ["finetuning", "pretraining", "inference"]),
    ("en", ["fine-tuning", "pretraining", "inference"], ["finetuning"]),
])
def test_plot_names_tracks_in_language(client, listed, language, names, raw):
    chart = client.get(reverse("feed-plot-language", args=[language])).content.decode()

    for name in names:
        assert f">{name}</text>" in chart
    for track_id in raw:
        assert f">{track_id}<" not in chart


def test_plot_cached_per_language(client, listed):
    chinese = client.get(reverse("feed-plot-language", args=["zh-hans"])).content.decode()
    english = client.get(reverse("feed-plot-language", args=["en"])).content.decode()

    assert ">预训练</text>" in chinese
    assert ">fine-tuning</text>" in english


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_listing_links_plot_of_its_language(client, listed, language):
    client.cookies["django_language"] = language
    page = client.get(reverse("certificate-list"), HTTP_ACCEPT_LANGUAGE=language).content.decode()

    assert f'src="{reverse("feed-plot-language", args=[language])}"' in page


def test_plot_in_unknown_language_is_404(client, listed):
    assert client.get(reverse("feed-plot-language", args=["fr"])).status_code == 404


def test_unknown_card_is_404(client, db):
    assert client.get(reverse("card-detail", args=[999])).status_code == 404


# Cached listing pages ---------------------------------------------------------


def listing_html(client, **params) -> str:
    return client.get(reverse("certificate-list"), params).content.decode()


def test_cached_listing_needs_few_queries(client, listed, django_assert_max_num_queries):
    listing_html(client)

    with django_assert_max_num_queries(2):
        page = listing_html(client)

    assert listed[0].number in page


def test_revocation_shows_at_once_on_cached_page(client, listed, staff):
    first_row = listing_html(client, status="valid")
    assert listed[0].number in first_row

    revoke_certificate(listed[0], reason="card withdrawn", revoked_by=staff)

    assert listed[0].number not in listing_html(client, status="valid")
    revoked_rows = listing_html(client, status="revoked")
    assert listed[0].number in revoked_rows


def test_vendor_rename_reaches_cached_page(client, listed, vendor):
    assert "Acme" in listing_html(client)

    vendor.name = "Renamed Chips"
    vendor.save()

    assert "Renamed Chips" in listing_html(client)


def test_cache_keyed_by_language_and_page(client, listed):
    chinese = client.get(reverse("certificate-list"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    english = client.get(reverse("certificate-list"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "Certified cards" in english
    assert "Certified cards" not in chinese
    table = lambda html: html[html.index('<table id="listing">'):html.index("</table>")]
    assert table(listing_html(client, page="abc")) == table(listing_html(client, page="1"))


@pytest.mark.parametrize("feed", ["feed-json", "feed-csv"])
@pytest.mark.parametrize("params, code, named", [
    ({"level": "x"}, "filter_invalid", "level='x'"),
    ({"level": "0"}, "filter_invalid", "level='0'"),
    ({"track": "\x00"}, "filter_invalid", "track='\\x00'"),
    ({"status": "expired"}, "filter_invalid", "status='expired'"),
    ({"q": "a\x00b"}, "filter_text_invalid", "q='a\\x00b'"),
    ({"vendor": "\x07"}, "filter_text_invalid", "vendor='\\x07'"),
    ({"vendor": "acme2"}, "filter_not_listed", "vendor='acme2'"),
    ({"rule_pack": "demo-2099.1"}, "filter_not_listed", "rule_pack='demo-2099.1'"),
])
def test_feed_rejects_invalid_filter(client, listed, feed, params, code, named):
    response = client.get(reverse(feed), params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert named in body["detail"]


@pytest.mark.parametrize("language, params, message", [
    ("en", {"level": "abc"},
     "The filter level='abc' is invalid, so the feed rejected the request and returned no rows. Use one of: 1, 2, 3, or leave level out."),
    ("zh-hans", {"level": "abc"}, "筛选条件 level='abc' 无效，因此数据源拒绝了该请求，没有返回任何行。请使用以下取值之一：1, 2, 3，或去掉 level。"),
    ("en", {"q": "a\x00b"},
     "The filter q='a\\x00b' contains control characters, so the feed rejected the request and returned no rows. Search with plain text."),
    ("zh-hans", {"q": "a\x00b"}, "筛选条件 q='a\\x00b' 含有控制字符，因此数据源拒绝了该请求，没有返回任何行。请用普通文字搜索。"),
    ("en", {"vendor": "acme2"}, "No certificate matches the filter vendor='acme2', so the feed rejected the request and returned no rows. "
                                "Use one of: acme, initech, or leave vendor out to get every certificate."),
    ("zh-hans", {"vendor": "acme2"}, "没有证书与筛选条件 vendor='acme2' 匹配，因此数据源拒绝了该请求，没有返回任何行。"
                                     "请使用以下取值之一：acme, initech，或去掉 vendor 以获取全部证书。"),
], ids=["invalid-en", "invalid-zh", "text-en", "text-zh", "not-listed-en", "not-listed-zh"])
def test_feed_says_filter_rejected(client, listed, language, params, message):
    client.cookies["django_language"] = language
    body = client.get(reverse("feed-json"), params).json()
    assert body["detail"] == message
    assert body["errors"][0]["detail"] == message


@pytest.mark.parametrize("language, message", [
    ("en", "No certificate matches the filter vendor='acme', so the feed rejected the request and returned no rows. "
           "No certificate has been issued yet, so leave vendor out."),
    ("zh-hans", "没有证书与筛选条件 vendor='acme' 匹配，因此数据源拒绝了该请求，没有返回任何行。目前尚未签发任何证书，请去掉 vendor。"),
])
def test_feed_filter_before_any_certificate(client, vendor, language, message):
    client.cookies["django_language"] = language
    response = client.get(reverse("feed-csv"), {"vendor": "acme"})
    assert response.status_code == 400
    assert response.json()["code"] == "filter_not_listed_none_issued"
    assert response.json()["detail"] == message


def test_feed_names_every_invalid_filter(client, listed):
    body = client.get(reverse("feed-json"), {"level": "nine", "track": "cooking"}).json()
    assert [error["code"] for error in body["errors"]] == ["filter_invalid", "filter_invalid"]
    assert "1, 2, 3" in body["errors"][0]["detail"]
    assert "pretraining" in body["errors"][1]["detail"]


@pytest.mark.parametrize("language, message", [
    ("en", "The filter level=&#x27;abc&#x27; is invalid and was ignored. Use one of: 1, 2, 3."),
    ("zh-hans", "筛选条件 level=&#x27;abc&#x27; 无效，已忽略。请使用以下取值之一：1, 2, 3。"),
])
def test_listing_page_names_invalid_filter(client, listed, language, message):
    client.cookies["django_language"] = language
    response = client.get(reverse("certificate-list"), {"level": "abc", "track": "pretraining"})
    page = response.content.decode()
    assert response.status_code == 400
    assert message in page
    assert listed[0].number in page
    assert listed[1].number not in page


@pytest.mark.parametrize("language, name, value, message", [
    ("en", "vendor", "acme2",
     "No certificate matches the filter vendor=&#x27;acme2&#x27;, so it was ignored. Use one of: acme, initech, or leave vendor out to list every certificate."),
    ("en", "rule_pack", "demo-2099.1",
     "No certificate matches the filter rule_pack=&#x27;demo-2099.1&#x27;, so it was ignored. Use one of: demo-2026.1, or leave rule_pack out to list every certificate."),
    ("zh-hans", "vendor", "acme2", "没有证书与筛选条件 vendor=&#x27;acme2&#x27; 匹配，该条件已忽略。请使用以下取值之一：acme, initech，或去掉 vendor 以列出全部证书。"),
])
def test_listing_page_names_unlisted_filter(client, listed, language, name, value, message):
    client.cookies["django_language"] = language
    response = client.get(reverse("certificate-list"), {name: value})
    page = response.content.decode()
    assert response.status_code == 400
    assert message in page
    assert listed[0].number in page
    assert listed[1].number in page


def test_unlisted_filter_names_at_most_known_shown(client, listed, monkeypatch):
    monkeypatch.setattr(listing, "KNOWN_SHOWN", 1)
    client.cookies["django_language"] = "en"

    response = client.get(reverse("certificate-list"), {"vendor": "acme2"})

    assert response.status_code == 400
    assert "Use one of: acme, …, or leave vendor out" in response.content.decode()


def test_feed_rejects_vendor_without_certificates(client, listed, other_vendor):
    client.cookies["django_language"] = "en"
    response = client.get(reverse("feed-json"), {"vendor": other_vendor.slug})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "filter_not_listed"
    assert "vendor='globex'" in body["detail"]
    assert "Use one of: acme, initech," in body["detail"]


def test_listed_filter_values_pass(client, listed):
    response = client.get(reverse("certificate-list"), {"vendor": "initech", "rule_pack": "demo-2026.1"})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' not in page
    assert listed[1].number in page
    assert listed[0].number not in page


@pytest.mark.parametrize("language, message", [
    ("en", "No certificate matches the filter vendor=&#x27;acme&#x27;, so it was ignored. No certificate has been issued yet, so leave vendor out."),
    ("zh-hans", "没有证书与筛选条件 vendor=&#x27;acme&#x27; 匹配，该条件已忽略。目前尚未签发任何证书，请去掉 vendor。"),
])
def test_listing_filter_before_any_certificate(client, vendor, language, message):
    client.cookies["django_language"] = language
    response = client.get(reverse("certificate-list"), {"vendor": "acme"})
    assert response.status_code == 400
    assert message in response.content.decode()


INVALID_PAGE = "is invalid. Use a whole number from 1 to 1. Page 1 is shown instead."
PAGE_PAST_LAST = "does not exist: there is 1 page. Use page 1. Page 1 is shown instead."


@pytest.mark.parametrize("value, status, message", [
    *[(value, 400, INVALID_PAGE) for value in ["-1", "0", "abc", "1.5", "²", " 1"]],
    *[(value, 404, PAGE_PAST_LAST) for value in ["2", "999", "9999999999999", "0000000002"]],
])
def test_listing_page_names_invalid_page(client, listed, value, status, message):
    client.cookies["django_language"] = "en"
    response = client.get(reverse("certificate-list"), {"page": value})
    page = response.content.decode()
    assert response.status_code == status
    assert f"The page {escape(repr(value))} {message}" in page
    assert listed[0].number in page
    assert listed[1].number in page


def test_listing_page_past_last_in_chinese(client, listed):
    client.cookies["django_language"] = "zh-hans"
    response = client.get(reverse("certificate-list"), {"page": "999"})
    assert response.status_code == 404
    assert "页码 &#x27;999&#x27; 不存在：共有 1 页。请使用 1 到 1 之间的整数。 现在显示第 1 页。" in response.content.decode()


@pytest.fixture
def one_row_pages(monkeypatch):
    """Page the listing and feeds by one row, so the two listed certificates fill two pages."""
    monkeypatch.setattr(listing, "LISTING_PAGE_SIZE", 1)
    monkeypatch.setattr(certificate_views, "LISTING_PAGE_SIZE", 1)


def test_listing_shows_last_page_past_the_end(client, listed, one_row_pages):
    client.cookies["django_language"] = "en"
    response = client.get(reverse("certificate-list"), {"page": "3"})
    page = response.content.decode()
    assert response.status_code == 404
    assert "there are 2 pages. Use a whole number from 1 to 2. Page 2 is shown instead." in page
    assert listed[0].number in page
    assert listed[1].number not in page


def test_listing_second_page_is_valid(client, listed, one_row_pages):
    response = client.get(reverse("certificate-list"), {"page": "2"})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' not in page
    assert listed[0].number in page
    assert listed[1].number not in page


@pytest.mark.parametrize("feed", ["feed-json", "feed-csv"])
@pytest.mark.parametrize("value, status, code", [("abc", 400, "page_invalid"), ("0", 400, "page_invalid"), ("3", 404, "page_out_of_range")])
def test_feed_rejects_invalid_page(client, listed, one_row_pages, feed, value, status, code):
    client.cookies["django_language"] = "en"
    response = client.get(reverse(feed), {"page": value})
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert f"The page '{value}'" in body["detail"]
    assert "from 1 to 2" in body["detail"]


def test_feed_names_invalid_filter_and_page(client, listed):
    body = client.get(reverse("feed-json"), {"level": "nine", "page": "x"}).json()
    assert [error["code"] for error in body["errors"]] == ["filter_invalid", "page_invalid"]


def test_json_feed_pages(client, listed, one_row_pages):
    second = client.get(reverse("feed-json"), {"page": "2"}).json()
    assert [row["number"] for row in second["certificates"]] == [listed[0].number]
    assert (second["page"], second["pages"], second["total"], second["count"]) == (2, 2, 2, 1)
    unpaged = client.get(reverse("feed-json")).json()
    assert unpaged["count"] == 2
    assert "page" not in unpaged


def test_csv_feed_pages(client, listed, one_row_pages):
    rows = list(csv.DictReader(io.StringIO(client.get(reverse("feed-csv"), {"page": "1"}).content.decode())))
    assert [row["number"] for row in rows] == [listed[1].number]


def test_listing_page_escapes_invalid_value(client, listed):
    page = client.get(reverse("certificate-list"), {"track": "<script>x</script>"}).content.decode()
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


def test_listing_without_filters_has_no_message(client, listed):
    page = client.get(reverse("certificate-list")).content.decode()
    assert 'role="alert"' not in page


# Cached feeds ------------------------------------------------------------------


# A cache hit reads only the listing token: once per cache key, and a paged feed also looks up its page count.
@pytest.mark.parametrize("name, params, queries", [
    ("feed-json", {}, 1), ("feed-json", {"page": "1"}, 2), ("feed-csv", {}, 1), ("feed-plot", {}, 1), ("revocation-list-json", {}, 1),
])
def test_cached_feed_needs_few_queries(client, listed, django_assert_max_num_queries, name, params, queries):
    first = client.get(reverse(name), params).content

    with django_assert_max_num_queries(queries):
        second = client.get(reverse(name), params).content

    assert second == first


def test_revocation_shows_at_once_in_feeds(client, listed, staff):
    assert rows_of(client, status="valid")[0]["number"] == listed[0].number
    client.get(reverse("feed-csv"))
    plot_before = client.get(reverse("feed-plot")).content
    assert listed[0].number not in client.get(reverse("revocation-list-json")).content.decode()

    revoke_certificate(listed[0], reason="card withdrawn", revoked_by=staff)

    assert rows_of(client, status="valid") == []
    rows = list(csv.DictReader(io.StringIO(client.get(reverse("feed-csv")).content.decode())))
    assert {row["status"] for row in rows} == {"revoked"}
    assert client.get(reverse("feed-plot")).content != plot_before
    assert listed[0].number in client.get(reverse("revocation-list-json")).content.decode()


def test_vendor_rename_reaches_cached_feeds(client, listed, vendor):
    assert "Acme" in client.get(reverse("feed-csv")).content.decode()
    assert "Acme" in client.get(reverse("feed-json")).content.decode()

    vendor.name = "Renamed Chips"
    vendor.save()

    assert "Renamed Chips" in client.get(reverse("feed-csv")).content.decode()
    assert "Renamed Chips" in client.get(reverse("feed-json")).content.decode()


def test_cached_feed_keyed_by_base_url(client, listed, settings):
    settings.PORTAL_BASE_URL = "https://one.example.com"
    assert rows_of(client)[0]["url"].startswith("https://one.example.com/")

    settings.PORTAL_BASE_URL = "https://two.example.com"
    assert rows_of(client)[0]["url"].startswith("https://two.example.com/")
