"""Run ticket workflows: issue a signed ticket, and accept a ticket once when a bundle carries it."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from certification.errors import TicketError
from certification.tickets import check_fits, encode_ticket_file, new_claims, sign_ticket, verify_ticket
from portal.audit.services import record
from portal.certificates.models import LEVEL_NUMERALS, Track
from portal.registry.models import Card, Vendor
from portal.submissions.models import RulePack, Submission
from portal.tickets.errors import TicketRequestError
from portal.tickets.keys import ticket_key, ticket_keyring
from portal.tickets.models import RunTicket

logger = logging.getLogger(__name__)


def _track_name(track: str):
    """Return the track's lazily translated name, or the id of a track the portal does not know."""
    return Track(track).label if track in Track.values else track


def ticket_scopes(rule_pack: RulePack) -> list[tuple[str, int]]:
    """Return the (track, level) pairs the rule pack defines, in its order."""
    tracks = rule_pack.parsed().data["tracks"]
    return [(track, int(level)) for track, spec in tracks.items() for level in (spec.get("levels") or {})]


def tickets_required(rule_pack: RulePack) -> bool:
    return bool(rule_pack.parsed().data["settings"].get("tickets_required", False))


@transaction.atomic
def issue_ticket(*, vendor: Vendor, card: Card, track: str, level: int, rule_pack: RulePack,
                 actor=None, lifetime: timedelta | None = None) -> RunTicket:
    """Sign and store a new one-time ticket for a run of `card` on (track, level) of `rule_pack`."""
    if card.vendor_id != vendor.pk:
        raise TicketRequestError("ticket_card_unknown", card=str(card), vendor=vendor.slug)
    if not card.approved:
        raise TicketRequestError("ticket_card_not_approved", model=card.model, serial=card.serial)
    if (track, level) not in ticket_scopes(rule_pack):
        raise TicketRequestError("ticket_scope_unknown", name=rule_pack.name, track=_track_name(track), level=LEVEL_NUMERALS.get(level, level))

    lifetime = lifetime or timedelta(days=settings.PORTAL_TICKET_LIFETIME_DAYS)
    issued_at = timezone.now().replace(microsecond=0)
    claims = new_claims(
        vendor=vendor.slug, card_model=card.model, card_serial=card.serial, track=track, level=level,
        rule_pack={"name": rule_pack.name, "sha256": rule_pack.sha256}, issued_at=issued_at, lifetime=lifetime,
    )
    ticket = RunTicket.objects.create(
        ticket_id=claims["ticket_id"], nonce=claims["nonce"], vendor=vendor, card=card, track=track, level=level,
        rule_pack=rule_pack, envelope=sign_ticket(claims, ticket_key()), issued_at=issued_at,
        expires_at=issued_at + lifetime,
        requested_by=actor if actor is not None and actor.is_authenticated else None,
    )
    record("run_ticket.issued", ticket, actor=actor, data={"ticket_id": ticket.ticket_id, "card": card.pk, "track": track, "level": level, "rule_pack": rule_pack.name})
    return ticket


def ticket_file(ticket: RunTicket) -> bytes:
    return encode_ticket_file(ticket.envelope)


def accept_ticket(submission: Submission, manifest: dict, rule_pack: RulePack) -> RunTicket | None:
    """Check the ticket a bundle carries and mark it used by `submission`; raise TicketError otherwise.

    A bundle without a ticket passes unless the rule pack requires one. The
    same submission may be checked again (a retried task); another one may not.
    """
    envelope = manifest.get("ticket")
    if envelope is None:
        if tickets_required(rule_pack):
            raise TicketError("ticket_missing", rule_pack.name)
        return None
    ticket = verify_ticket(envelope, ticket_keyring())
    check_fits(ticket, manifest, submission.created_at)
    return _claim(submission, ticket.ticket_id, ticket.claims["nonce"])


@transaction.atomic
def _claim(submission: Submission, ticket_id: str, nonce: str) -> RunTicket:
    ticket = RunTicket.objects.select_for_update().filter(ticket_id=ticket_id, nonce=nonce).first()
    if ticket is None:
        raise TicketError("ticket_unknown", ticket_id)
    if ticket.vendor_id != submission.vendor_id:
        raise TicketError("ticket_vendor_mismatch", f"{ticket.vendor.slug!r} / {submission.vendor.slug!r}")
    if ticket.used_by_id not in (None, submission.pk):
        raise TicketError("ticket_reused", ticket_id)
    if ticket.used_by_id is None:
        ticket.used_by, ticket.used_at = submission, timezone.now()
        ticket.save(update_fields=["used_by", "used_at"])
        record("run_ticket.used", ticket, data={"ticket_id": ticket_id, "submission": submission.pk})
        logger.info("run ticket %s used by submission %s", ticket_id, submission.pk)
    return ticket
