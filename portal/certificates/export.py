"""Export the public pages as a self-contained static site: HTML, JSON, CSV and SVG that work offline.

Every page is rendered by the same view that serves it, with
`request.static_export` set so templates leave out forms and links that
need the live portal. Links to other exported pages and static files are
then rewritten to relative paths, so the folder can be opened from disk or
published on any static host.

The HTML pages are written once per language of SITE_LANGUAGES: Chinese at
the root and English under `en/`, each page linking to its twin in the
other language. Data files are written once, at the root, and every page
links to those. The JSON and CSV feeds do not depend on the language; the
bar chart names tracks, so it is written once per language
(feeds/levels-zh-hans.svg, feeds/levels-en.svg) and each page links the
chart of its own language.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.urls import resolve, reverse
from django.utils import translation

from portal.certificates.models import Certificate

logger = logging.getLogger(__name__)

LINK_PATTERN = re.compile(r'(?P<attribute>\b(?:href|src))="(?P<url>/[^"]*)"')
# The web font of the Chinese pages travels with its licence files.
STATIC_FILES = [
    "css/portal.css", "css/cjk-font.css",
    "fonts/wqy-microhei.ttf", "fonts/LICENSE-Apache-2.0.txt", "fonts/wqy-microhei.copyright.txt",
]
# (language code, folder of its pages inside the site, the language's own name); the first is the default.
SITE_LANGUAGES = (("zh-hans", "", "中文"), ("en", "en/", "English"))


@dataclass
class ExportReport:
    pages: int = 0
    files: list[str] = field(default_factory=list)


def site_paths() -> list[str]:
    """Return the URL path of every page and data file the static site contains."""
    paths = [reverse("certificate-list"), reverse("revocation-list"), reverse("revocation-list-json"),
             reverse("feed-json"), reverse("feed-csv")]
    paths += [reverse("feed-plot-language", args=[language]) for language, _folder, _name in SITE_LANGUAGES]
    certificates = Certificate.objects.order_by("id").values_list("number", "card_id", "credential")
    card_ids = set()
    for number, card_id, credential in certificates:
        paths.append(reverse("certificate-detail", args=[number]))
        if credential:
            paths.append(reverse("certificate-credential", args=[number]))
        card_ids.add(card_id)
    paths.extend(reverse("card-detail", args=[card_id]) for card_id in sorted(card_ids))
    return paths


def output_name(path: str) -> str:
    """Map a URL path to a file path inside the site: folders get an index.html."""
    relative = path.lstrip("/")
    return relative + "index.html" if relative == "" or relative.endswith("/") else relative


def export_site(target: Path, base_url: str) -> ExportReport:
    """Write the static site in every language of SITE_LANGUAGES into `target`, which must be empty or absent.

    `base_url` is the public address of the live portal; the feeds' `url`
    fields and the certificate pages' verification links point there.
    """
    target.mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    factory = RequestFactory()
    paths = site_paths()
    for language, folder, _name in SITE_LANGUAGES:
        with translation.override(language):
            for path in paths:
                is_page = output_name(path).endswith(".html")
                if not is_page and folder:
                    continue  # data files are written once, at the root, for the pages of every language
                page = folder + output_name(path) if is_page else output_name(path)
                _write(target / page, _render(factory, path, language_links(output_name(path), folder), base_url), page, folder)
                report.pages += 1
    for name in STATIC_FILES:
        destination = target / "static" / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.BASE_DIR / "static" / name, destination)
    logger.info("exported %s files to %s", report.pages, target)
    return report


def language_links(name: str, folder: str) -> list[dict]:
    """Return a link per site language to the page `name`, relative to its copy in `folder`."""
    page_folder = posixpath.dirname(folder + name) or "."
    return [{"code": code, "name": label, "url": posixpath.relpath(other + name, page_folder), "current": other == folder}
            for code, other, label in SITE_LANGUAGES]


def _render(factory: RequestFactory, path: str, links: list[dict], base_url: str) -> bytes:
    request = factory.get(path)
    request.public_base_url = base_url
    request.user = AnonymousUser()
    request.static_export = True
    request.static_language_links = links
    match = resolve(path)
    response = match.func(request, *match.args, **match.kwargs)
    if response.status_code != 200:
        raise RuntimeError(f"exporting {path} failed with HTTP {response.status_code}")
    return response.content


def _write(destination: Path, content: bytes, page: str, folder: str) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.suffix == ".html":
        content = relative_links(content.decode("utf-8"), page, folder).encode("utf-8")
    destination.write_bytes(content)


def relative_links(html: str, page: str, folder: str = "") -> str:
    """Rewrite root-relative href and src values into paths relative to `page` inside the site.

    Links to pages stay in the page's language `folder`; links to data and
    static files go to the single copy at the root.
    """
    page_folder = posixpath.dirname(page) or "."

    def replace(match: re.Match) -> str:
        url = match.group("url").split("?", 1)[0].split("#", 1)[0]
        target = output_name(url)
        if target.endswith(".html"):
            target = folder + target
        relative = posixpath.relpath(target, page_folder)
        return f'{match.group("attribute")}="{relative}"'

    return LINK_PATTERN.sub(replace, html)
