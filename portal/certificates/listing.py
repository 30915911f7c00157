"""The public listing: filtered certificate rows, card histories, and the same data as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import Q
from django.urls import reverse

from portal.certificates.errors import CertificateError
from portal.certificates.models import Certificate, Track
from portal.errors import PortalError
from portal.evaluation.services import effective_verdict
from portal.query_params import read_choice, shown_value
from portal.registry.models import Card

FEED_COLUMNS = ["number", "status", "vendor", "card", "track", "level", "rule_pack", "reference_kind", "issued_at", "revoked_at", "revoked_reason", "card_id", "url"]
STATUS_FILTERS = ("all", "valid", "revoked")
LISTING_PAGE_SIZE = 100
# The maximum number of known values an unknown-filter error names; an ellipsis marks the rest.
KNOWN_SHOWN = 20


@dataclass(frozen=True)
class ListingFilters:
    query: str = ""
    vendor: str = ""
    track: str = ""
    level: int | None = None
    rule_pack: str = ""
    status: str = "all"

    @classmethod
    def from_params(cls, params) -> tuple[ListingFilters, list[PortalError]]:
        """Read filters from query parameters.

        An invalid value, or a vendor or rule pack that no certificate has, is
        left out of the filters and returned as an error naming it, so the page
        can name what it ignored.
        """
        errors: list[PortalError] = []
        level = read_choice(params, "level", ("1", "2", "3"), errors)
        filters = cls(
            query=_text(params, "q", 200, errors),
            vendor=_listed(_text(params, "vendor", 200, errors), "vendor", "card__vendor__slug", errors),
            track=read_choice(params, "track", tuple(Track.values), errors),
            level=int(level) if level else None,
            rule_pack=_listed(_text(params, "rule_pack", 100, errors), "rule_pack", "rule_pack__name", errors),
            status=read_choice(params, "status", STATUS_FILTERS, errors) or "all",
        )
        return filters, errors

    def as_query(self) -> str:
        """Return the filters as a query string, without empty and default values."""
        params = {"q": self.query, "vendor": self.vendor, "track": self.track, "level": self.level or "", "rule_pack": self.rule_pack,
                  "status": "" if self.status == "all" else self.status}
        return urlencode({key: value for key, value in params.items() if value})


def _text(params, name: str, limit: int, errors: list) -> str:
    value = params.get(name, "").strip()
    if any(ord(character) < 32 for character in value):
        # PostgreSQL rejects NUL in text, and no vendor, model or number contains control characters.
        errors.append(CertificateError("filter_text_invalid", name=name, value=shown_value(value)))
        return ""
    return value[:limit]


def _listed(value: str, name: str, field: str, errors: list) -> str:
    """Return `value` when a certificate has it in `field`, or "" after appending to `errors` an error that names the values certificates have.

    Without this check a mistyped vendor slug or rule-pack name would list no
    rows and give no reason.
    """
    if value == "" or Certificate.objects.filter(**{field: value}).exists():
        return value
    # One more than are shown, to tell whether the list is cut.
    known = list(Certificate.objects.values_list(field, flat=True).distinct().order_by(field)[: KNOWN_SHOWN + 1])
    if not known:
        errors.append(CertificateError("filter_not_listed_none_issued", name=name, value=shown_value(value)))
    else:
        named = ", ".join(known[:KNOWN_SHOWN]) + (", …" if len(known) > KNOWN_SHOWN else "")
        errors.append(CertificateError("filter_not_listed", name=name, value=shown_value(value), known=named))
    return ""


def page_count(filters: ListingFilters) -> int:
    """Return the number of listing pages for `filters`; an empty listing has one page."""
    return Paginator(listed_certificates(filters), LISTING_PAGE_SIZE).num_pages


def feed_records(filters: ListingFilters, page: int | None, base_url: str) -> list[dict]:
    """Return the feed rows for `filters`: every row, or only page `page` of LISTING_PAGE_SIZE rows."""
    certificates = listed_certificates(filters)
    if page is not None:
        certificates = Paginator(certificates, LISTING_PAGE_SIZE).page(page).object_list
    return [certificate_record(item, base_url) for item in certificates]


def feed_json(filters: ListingFilters, page: int | None, base_url: str) -> str:
    """Return the JSON feed text; a paged request also gets `page`, `pages` and `total`."""
    records = feed_records(filters, page, base_url)
    body: dict = {"certificates": records, "count": len(records)}
    if page is not None:
        paginator = Paginator(listed_certificates(filters), LISTING_PAGE_SIZE)
        body.update(page=page, pages=paginator.num_pages, total=paginator.count)
    return json.dumps(body, ensure_ascii=False)


def listed_certificates(filters: ListingFilters = ListingFilters()):
    certificates = Certificate.objects.select_related("card__vendor", "rule_pack").order_by("-issued_at", "-id")
    if filters.query:
        text = filters.query
        certificates = certificates.filter(
            Q(number__icontains=text) | Q(card__model__icontains=text) | Q(card__vendor__name__icontains=text) | Q(card__vendor__slug__icontains=text)
        )
    if filters.vendor:
        certificates = certificates.filter(card__vendor__slug=filters.vendor)
    if filters.track:
        certificates = certificates.filter(track=filters.track)
    if filters.level:
        certificates = certificates.filter(level=filters.level)
    if filters.rule_pack:
        certificates = certificates.filter(rule_pack__name=filters.rule_pack)
    if filters.status == "valid":
        certificates = certificates.filter(revoked_at__isnull=True)
    elif filters.status == "revoked":
        certificates = certificates.filter(revoked_at__isnull=False)
    return certificates


def certificate_record(certificate: Certificate, base_url: str = "") -> dict:
    return {
        "number": certificate.number,
        "status": "revoked" if certificate.is_revoked else "valid",
        "vendor": certificate.card.vendor.name,
        "card": certificate.card.model,
        "track": certificate.track,
        "level": certificate.level,
        "rule_pack": certificate.rule_pack.name,
        "reference_kind": certificate.rule_pack.reference_kind,
        "issued_at": certificate.issued_at.isoformat(),
        "revoked_at": certificate.revoked_at.isoformat() if certificate.revoked_at else None,
        "revoked_reason": certificate.revoked_reason or None,
        "card_id": certificate.card_id,
        "url": base_url + reverse("certificate-detail", args=[certificate.number]),
    }


def records_csv(records: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FEED_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in records:
        writer.writerow({key: _csv_safe(value) for key, value in row.items()})
    return buffer.getvalue()


def _csv_safe(value):
    """Prefix text that a spreadsheet would run as a formula, because vendor names end up in this file."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def facets() -> dict:
    """Return the values the listing's filters offer."""
    certificates = Certificate.objects.all()
    return {
        "vendors": list(certificates.values_list("card__vendor__slug", "card__vendor__name").distinct().order_by("card__vendor__name")),
        "rule_packs": list(certificates.values_list("rule_pack__name", flat=True).distinct().order_by("rule_pack__name")),
        "tracks": Track.choices,
    }


def card_history(card: Card) -> list[dict]:
    """Return every submission and certificate event of the card, oldest first."""
    events = []
    # The plot series of a report can be large and the history never shows it.
    for submission in card.submissions.select_related("rule_pack", "report").defer("report__series").order_by("created_at", "id"):
        tracks = effective_verdict(submission).get("tracks", {})
        levels = {track: info.get("level", 0) for track, info in tracks.items()}
        events.append({"time": submission.created_at, "kind": "submission", "submission": submission, "levels": levels})
    for certificate in card.certificates.select_related("rule_pack").order_by("issued_at", "id"):
        events.append({"time": certificate.issued_at, "kind": "certificate", "certificate": certificate})
        if certificate.revoked_at:
            events.append({"time": certificate.revoked_at, "kind": "revocation", "certificate": certificate})
    return sorted(events, key=lambda event: event["time"])
