"""Certificate PDFs rendered with WeasyPrint from a Django template.

The renderer may load only the project's own static files and data URIs,
so neither vendor text nor a template change can make it reach the network
or read other files of the server.
"""

from __future__ import annotations

import base64
import io
import mimetypes
from pathlib import Path
from urllib.parse import unquote, urlparse

import qrcode
from django.conf import settings
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import translation
from django.urls import reverse
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from portal.certificates.models import Certificate
from portal.links import public_url


def static_dir() -> Path:
    return (settings.BASE_DIR / "static").resolve()


class StaticFilesOnlyFetcher(URLFetcher):
    """Fetch data URIs and file URLs inside the project's static folder; reject everything else."""

    def fetch(self, url, headers=None):
        if url.startswith("data:"):
            return super().fetch(url, headers)
        path = self.static_path(url)
        if path is None:
            raise ValueError(f"certificate PDFs load only the project's static files and data URIs, not {url}")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": content_type})

    @staticmethod
    def static_path(url: str) -> Path | None:
        parsed = urlparse(url)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            return None
        path = Path(unquote(parsed.path)).resolve()
        root = static_dir()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path


def verification_url(certificate: Certificate, request: HttpRequest | None = None) -> str:
    """Return the link signed into the certificate's credential, under the public address when it is root-relative.

    An empty `verification_url`, left on a certificate that had no credential when the field was added,
    gets the link built from the current address.
    """
    link = certificate.verification_url or reverse("certificate-detail", args=[certificate.number])
    if link.startswith("/"):
        return public_url(link, request)
    return link


def qr_data_uri(text: str) -> str:
    image = qrcode.make(text, box_size=6, border=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


FIGURE_TEXTS = ("measured", "reference", "bound")


def bilingual_figures(certificate: Certificate) -> list[dict]:
    """Return each key figure's id and its measured, reference and bound texts as {"zh", "en"}, with "en" empty where both read the same."""
    with translation.override("zh-hans"):
        chinese = certificate.figures()
    with translation.override("en"):
        english = certificate.figures()
    return [
        {"id": zh["id"], "texts": [{"zh": zh[key], "en": "" if en[key] == zh[key] else en[key]} for key in FIGURE_TEXTS]}
        for zh, en in zip(chinese, english)
    ]


def render_certificate_pdf(certificate: Certificate, request: HttpRequest | None = None) -> bytes:
    """Render the PDF, whose QR code and link show the link signed into the credential (see verification_url)."""
    url = verification_url(certificate, request)
    html = render_to_string("certificates/pdf.html", {
        "certificate": certificate,
        "verification_url": url,
        "qr_code": qr_data_uri(url),
        "reference_kind": certificate.rule_pack.reference_kind,
        "figures": bilingual_figures(certificate),
    })
    document = HTML(string=html, base_url=static_dir().as_uri() + "/", url_fetcher=StaticFilesOnlyFetcher())
    return document.write_pdf()
