"""Issuing and revoking certificates; the staff page and the management command both call these."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from portal.audit.services import record
from portal.certificates.errors import CertificateError
from portal.certificates.credentials import sign_certificate
from portal.certificates.figures import stored_figure
from portal.certificates.models import Certificate, CertificateSequence, Track
from portal.evaluation.services import effective_verdict
from portal.links import public_url
from portal.permissions import is_reviewer
from portal.registry.models import Card
from portal.submissions.models import Submission
from portal.text import first_control_character

logger = logging.getLogger(__name__)


def check_scope(track: str, level: int) -> None:
    if track not in Track.values:
        raise CertificateError("track_unknown", track=track, tracks=", ".join(Track.values))
    if level not in (1, 2, 3):
        raise CertificateError("level_invalid", level=level)


def track_name(track: str):
    """Return the track's name in the active language (推理 for inference), or the id of an unknown track."""
    return Track(track).label if track in Track.values else track


def granted_level(submission: Submission, track: str) -> int:
    """Return the level the verdict grants, judged with signed-off human evaluation when there is one."""
    return int((effective_verdict(submission).get("tracks", {}).get(track) or {}).get("level", 0))


def check_passing(submission: Submission, track: str, level: int) -> None:
    """Raise unless the submission's verdict grants `track` at `level` or higher."""
    if submission.state != Submission.State.JUDGED:
        raise CertificateError("submission_not_judged", submission=submission.pk, state=Submission.State(submission.state).label)
    granted = granted_level(submission, track)
    if granted < level:
        raise CertificateError("verdict_not_passing", submission=submission.pk, track=track_name(track), granted=granted, level=level)


def passing_submission(card: Card, track: str, level: int) -> Submission:
    """Return the newest judged submission of the card whose verdict grants (track, level)."""
    judged = card.submissions.filter(state=Submission.State.JUDGED).select_related("report").order_by("-created_at")
    for submission in judged:
        if granted_level(submission, track) >= level:
            return submission
    raise CertificateError("no_passing_submission", card=str(card), track=track_name(track), level=level)


def issue_certificate(*, submission: Submission, track: str, level: int, issued_by) -> Certificate:
    """Issue a certificate for (card, track, level) when the submission's verdict grants it."""
    if not is_reviewer(issued_by):
        raise CertificateError("not_staff", user=issued_by.get_username() or "anonymous")
    check_scope(track, level)
    try:
        with transaction.atomic():
            certificate = _issue_locked(submission.pk, track, level, issued_by)
    except IntegrityError:
        # The unique constraint caught a certificate issued concurrently for the same scope.
        raise _already_certified(submission, track, level) from None
    logger.info("certificate %s issued for card %s, %s level %s", certificate.number, certificate.card_id, track, level)
    return certificate


def _issue_locked(submission_id: int, track: str, level: int, issued_by) -> Certificate:
    submission = Submission.objects.select_for_update(of=("self",)).select_related("report", "card", "rule_pack").get(pk=submission_id)
    check_passing(submission, track, level)
    if _active_for(submission, track, level) is not None:
        raise _already_certified(submission, track, level)

    now = timezone.now()
    number = allocate_number(now.year)
    certificate = Certificate.objects.create(
        number=number, card=submission.card, track=track, level=level,
        rule_pack=submission.rule_pack, submission=submission, key_figures=key_figures(submission, track, level),
        issued_at=now, issued_by=issued_by,
        # NOTE: with PORTAL_BASE_URL unset this is a root-relative path, because issuing has no request to take a host from.
        verification_url=public_url(reverse("certificate-detail", args=[number])),
    )
    certificate.credential = sign_certificate(certificate)
    certificate.save(update_fields=["credential"])
    record("certificate.issued", certificate, actor=issued_by, data={
        "number": certificate.number, "card": submission.card_id, "track": track, "level": level,
        "rule_pack": submission.rule_pack.name, "submission": submission.pk,
    })
    return certificate


def _active_for(submission: Submission, track: str, level: int) -> Certificate | None:
    return Certificate.objects.active().filter(
        card=submission.card, track=track, level=level, rule_pack=submission.rule_pack
    ).first()


def _already_certified(submission: Submission, track: str, level: int) -> CertificateError:
    existing = _active_for(submission, track, level)
    return CertificateError(
        "already_certified", card=str(submission.card), number=existing.number if existing else "-",
        track=track_name(track), level=level, rule_pack=submission.rule_pack.name,
    )


def allocate_number(year: int) -> str:
    """Take the next number of the year; the caller's transaction holds the counter row's lock."""
    CertificateSequence.objects.get_or_create(year=year)
    sequence = CertificateSequence.objects.select_for_update().get(year=year)
    sequence.last += 1
    sequence.save(update_fields=["last"])
    return f"PPLM-{year}-{sequence.last:05d}"


def key_figures(submission: Submission, track: str, level: int) -> list[dict]:
    """Return the passing criteria of the workloads the track requires up to `level`, for the certificate."""
    pack = submission.rule_pack.parsed().data
    levels = pack.get("tracks", {}).get(track, {}).get("levels", {})
    workloads = {name for number, entry in levels.items() if int(number) <= level for name in entry.get("workloads", [])}
    criteria = effective_verdict(submission).get("criteria", [])
    return [stored_figure(item, pack.get("settings", {})) for item in criteria if item.get("status") == "pass" and item.get("workload") in workloads]


@transaction.atomic
def revoke_certificate(certificate: Certificate, *, reason: str, revoked_by) -> Certificate:
    """Revoke a certificate with a public reason; staff only, and only once."""
    if revoked_by is None or not is_reviewer(revoked_by):
        raise CertificateError("not_staff_revoke", user=getattr(revoked_by, "get_username", lambda: "anonymous")() or "anonymous")
    reason = reason.strip()
    if not reason:
        raise CertificateError("reason_missing", number=certificate.number)
    character = first_control_character(reason, allow_whitespace=True)
    if character is not None:
        raise CertificateError("reason_invalid", character=character)
    certificate = Certificate.objects.select_for_update().get(pk=certificate.pk)
    if certificate.revoked_at is not None:
        raise CertificateError("already_revoked", number=certificate.number, revoked_at=certificate.revoked_at.isoformat())
    certificate.revoked_at = timezone.now()
    certificate.revoked_reason = reason
    certificate.revoked_by = revoked_by
    certificate.save(update_fields=["revoked_at", "revoked_reason", "revoked_by"])
    record("certificate.revoked", certificate, actor=revoked_by, data={"number": certificate.number, "reason": reason})
    return certificate
