"""The static site export: every page and data file is written and every link inside it resolves."""

import csv
import json
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.certificates.services import issue_certificate, revoke_certificate

from .helpers_verdict import judged_submission, verdict

LINK = re.compile(r'\b(?:href|src)="([^"]*)"')
LANGUAGE_LINK = re.compile(r'<a href="([^"]*)" hreflang=')


@pytest.fixture
def certificates(vendor, card, rule_pack, staff):
    first = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(1, 1), label="a"), track="pretraining", level=1, issued_by=staff)
    second = issue_certificate(submission=judged_submission(vendor, card, rule_pack, verdict(1, 1), label="b"), track="finetuning", level=1, issued_by=staff)
    revoke_certificate(second, reason="测试撤销 <script>", revoked_by=staff)
    return [first, second]


@pytest.fixture
def site(tmp_path, certificates):
    target = tmp_path / "site"
    call_command("export_site", str(target), "--base-url", "https://cert.example.org/")
    return target


def test_export_writes_pages_and_feeds(site, certificates, card):
    expected = ["index.html", "feeds/certificates.json", "feeds/certificates.csv", "feeds/levels-zh-hans.svg", "feeds/levels-en.svg",
                "certificates/revoked/index.html", "certificates/revoked.json", f"cards/{card.pk}/index.html"]
    for certificate in certificates:
        expected += [f"certificates/{certificate.number}/index.html", f"certificates/{certificate.number}/credential.json"]
    for name in expected:
        assert (site / name).is_file(), name


def test_stylesheet_urls_resolve(site):
    sheets = list((site / "static" / "css").glob("*.css"))
    assert sheets
    for sheet in sheets:
        for url in re.findall(r'url\("([^"]+)"\)', sheet.read_text(encoding="utf-8")):
            assert (sheet.parent / url).resolve().is_file(), f"{sheet.name} refers to missing {url}"


def test_every_link_resolves(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 10
    assert len([page for page in pages if page.is_relative_to(site / "en")]) == len(pages) // 2
    for page in pages:
        for link in LINK.findall(page.read_text(encoding="utf-8")):
            assert not link.startswith(("/", "http:", "https:", "file:")), f"{page}: {link}"
            assert (page.parent / link).resolve().is_file(), f"{page.relative_to(site)} links to missing {link}"


def test_static_pages_have_no_server_forms(site, certificates):
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "<form" not in text, page
        assert "/pdf/" not in text, page
    detail = (site / f"certificates/{certificates[1].number}/index.html").read_text(encoding="utf-8")
    assert "测试撤销 &lt;script&gt;" in detail


def test_data_files_parse(site, certificates):
    records = json.loads((site / "feeds/certificates.json").read_text(encoding="utf-8"))["certificates"]
    assert {row["number"] for row in records} == {item.number for item in certificates}
    rows = list(csv.DictReader((site / "feeds/certificates.csv").open(encoding="utf-8")))
    assert {row["status"] for row in rows} == {"valid", "revoked"}
    assert json.loads((site / "certificates/revoked.json").read_text(encoding="utf-8"))["count"] == 1
    for language in ("zh-hans", "en"):
        assert ElementTree.parse(site / f"feeds/levels-{language}.svg").getroot().tag.endswith("svg")


def test_plot_per_language(site):
    chinese = (site / "feeds/levels-zh-hans.svg").read_text(encoding="utf-8")
    english = (site / "feeds/levels-en.svg").read_text(encoding="utf-8")

    assert ">预训练</text>" in chinese
    assert ">pretraining<" not in chinese
    assert ">fine-tuning</text>" in english
    assert 'src="feeds/levels-zh-hans.svg"' in (site / "index.html").read_text(encoding="utf-8")
    assert 'src="../feeds/levels-en.svg"' in (site / "en/index.html").read_text(encoding="utf-8")


def test_export_refuses_non_empty_folder(tmp_path, certificates):
    target = tmp_path / "used"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(CommandError, match=f"the folder {target} is not empty"):
        call_command("export_site", str(target), "--base-url", "https://cert.example.org")
    assert (target / "keep.txt").read_text() == "mine"


def test_export_refuses_a_file(tmp_path, certificates):
    target = tmp_path / "site.zip"
    target.write_text("mine")
    with pytest.raises(CommandError, match=f"{target} is a file, not a folder"):
        call_command("export_site", str(target), "--base-url", "https://cert.example.org")
    assert target.read_text() == "mine"


def test_export_unwritable_path(tmp_path, certificates):
    parent = tmp_path / "a-file"
    parent.write_text("mine")
    with pytest.raises(CommandError, match=f"cannot create {parent / 'site'} because {parent} is not a folder"):
        call_command("export_site", str(parent / "site"), "--base-url", "https://cert.example.org")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_export_into_proc_fails_cleanly(certificates):
    with pytest.raises(CommandError, match="/proc/x") as raised:
        call_command("export_site", "/proc/x", "--base-url", "https://cert.example.org")
    assert "Traceback" not in str(raised.value)


def test_feed_urls_use_base_url(site, certificates):
    records = json.loads((site / "feeds/certificates.json").read_text(encoding="utf-8"))["certificates"]
    assert {row["url"] for row in records} == {f"https://cert.example.org/certificates/{item.number}/" for item in certificates}
    rows = list(csv.DictReader((site / "feeds/certificates.csv").open(encoding="utf-8")))
    assert all(row["url"].startswith("https://cert.example.org/certificates/") for row in rows)


def test_base_url_defaults_to_setting(tmp_path, certificates, settings):
    settings.PORTAL_BASE_URL = "https://public.example.net"
    call_command("export_site", str(tmp_path / "site"))
    records = json.loads((tmp_path / "site/feeds/certificates.json").read_text(encoding="utf-8"))["certificates"]
    assert all(row["url"].startswith("https://public.example.net/certificates/") for row in records)


def test_export_without_base_url_fails(tmp_path, certificates, settings):
    settings.PORTAL_BASE_URL = ""
    with pytest.raises(CommandError, match="--base-url"):
        call_command("export_site", str(tmp_path / "site"))
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("value", ["cert.example.org", "ftp://cert.example.org", "https://cert.example.org/portal", "https://x.org/?a=1"])
def test_export_rejects_bad_base_url(tmp_path, certificates, value):
    with pytest.raises(CommandError, match="is not a base URL"):
        call_command("export_site", str(tmp_path / "site"), "--base-url", value)


def test_export_has_both_languages(site, certificates, card):
    pages = [name for name in ("index.html", f"cards/{card.pk}/index.html", f"certificates/{certificates[0].number}/index.html")]

    for name in pages:
        chinese = (site / name).read_text(encoding="utf-8")
        english = (site / "en" / name).read_text(encoding="utf-8")
        assert '<html lang="zh-hans">' in chinese, name
        assert '<html lang="en">' in english, name
        assert 'id="language-links"' in chinese, name
        assert 'id="language-links"' in english, name
    assert "Certified cards" in (site / "en/index.html").read_text(encoding="utf-8")
    assert "Certified cards" not in (site / "index.html").read_text(encoding="utf-8")
    assert not (site / "en/feeds").exists()


def test_language_links_point_to_twin(site, certificates):
    name = f"certificates/{certificates[0].number}/index.html"
    chinese_links = LANGUAGE_LINK.findall((site / name).read_text(encoding="utf-8"))
    english_links = LANGUAGE_LINK.findall((site / "en" / name).read_text(encoding="utf-8"))

    assert [((site / name).parent / link).resolve() for link in chinese_links] == [(site / "en" / name).resolve()]
    assert [((site / "en" / name).parent / link).resolve() for link in english_links] == [(site / name).resolve()]


def test_english_pages_link_within_english(site):
    listing = (site / "en/index.html").read_text(encoding="utf-8")
    page_links = [link for link in LINK.findall(listing) if link.endswith("index.html") and "hreflang" not in link]

    assert page_links
    for link in page_links:
        resolved = ((site / "en") / link).resolve()
        assert resolved.is_relative_to((site / "en").resolve()) or resolved == (site / "index.html").resolve(), link
