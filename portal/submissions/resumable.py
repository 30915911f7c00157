"""Resumable uploads: declare size and digest, send byte ranges in any number of requests, then complete.

The bytes go to MEDIA_ROOT/partial/<session>.part. An open upload that
received nothing for BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS expires: the
hourly task `expire_upload_sessions` (or `manage.py expire_uploads`) deletes
its partial file, and the API replies to it with `upload_session_expired` so the
agent starts a new upload. `received` only grows
after the bytes are on disk, so a connection that breaks in the middle of a
range loses nothing already counted: the next range starts at `received`.
Completing checks size and sha256 and hands the file to `receive_bundle`,
which makes the same bundle one submission however often it is sent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import UnreadablePostError
from django.utils import timezone

from portal.audit.services import record
from portal.query_params import shown_value
from portal.text import first_control_character

from portal.submissions.errors import SubmissionError
from portal.submissions.models import Submission, UploadSession
from portal.submissions.services import HASH_CHUNK_BYTES, receive_bundle

logger = logging.getLogger(__name__)

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
RANGE_PATTERN = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def open_session(*, vendor, actor, size, sha256: str, name: str = "") -> tuple[UploadSession, bool]:
    """Return (upload, created): the open upload of this bundle for `vendor`, a completed one when it is already stored, or a new one."""
    sha256 = str(sha256).lower()
    _check_declaration(size, sha256, name)
    existing = Submission.objects.filter(vendor=vendor, sha256=sha256).first()
    if existing is not None:
        with transaction.atomic():
            for session in UploadSession.objects.select_for_update().filter(vendor=vendor, sha256=sha256, state=UploadSession.State.OPEN):
                close_as_duplicate(session, existing)
            # Declaring a stored bundle again returns its earliest completed upload, so repeated calls keep one upload id.
            completed = UploadSession.objects.filter(
                vendor=vendor, sha256=sha256, state=UploadSession.State.COMPLETED, submission=existing,
            ).order_by("created_at").first()
            if completed is not None:
                return completed, False
            return UploadSession.objects.create(
                vendor=vendor, created_by=actor, name=name[-255:], size=existing.size, sha256=sha256,
                received=existing.size, state=UploadSession.State.COMPLETED, submission=existing,
            ), False
    stale = UploadSession.objects.filter(vendor=vendor, sha256=sha256, state=UploadSession.State.OPEN).first()
    if stale is not None and stale.is_stale(timezone.now()):
        expire_session(stale.pk)
    try:
        with transaction.atomic():
            session, created = UploadSession.objects.get_or_create(
                vendor=vendor, sha256=sha256, state=UploadSession.State.OPEN,
                defaults={"created_by": actor, "name": name[-255:], "size": size},
            )
    except IntegrityError:
        session, created = UploadSession.objects.get(vendor=vendor, sha256=sha256, state=UploadSession.State.OPEN), False
    if session.size != size:
        raise SubmissionError("upload_size_mismatch", stored=session.size, size=size)
    return session, created


def _check_declaration(size, sha256: str, name: str) -> None:
    character = first_control_character(name)
    if character is not None:
        raise SubmissionError("upload_name_invalid", name=shown_value(name), character=character)
    if size == 0 and not isinstance(size, bool):
        raise SubmissionError("bundle_empty", name=name or "-")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise SubmissionError("upload_size_invalid", size=size)
    if size > settings.BUNDLE_UPLOAD_MAX_BYTES:
        raise SubmissionError("bundle_too_large", limit=settings.BUNDLE_UPLOAD_MAX_BYTES)
    if not SHA256_PATTERN.match(sha256):
        raise SubmissionError("upload_digest_invalid", sha256=sha256)


def session_for(user, session_id) -> UploadSession:
    """Return the upload if the user is a member of its vendor; otherwise it does not exist for them."""
    session = UploadSession.objects.select_related("vendor").filter(pk=session_id).first()
    if session is None or not session.vendor.has_member(user):
        raise SubmissionError("upload_session_not_found", session=session_id)
    if session.is_stale(timezone.now()):
        expire_session(session.pk)
        session.refresh_from_db()
    if session.state == UploadSession.State.EXPIRED:
        raise expired_error(session)
    return session


def expired_error(session: UploadSession) -> SubmissionError:
    return SubmissionError("upload_session_expired", session=session.pk, hours=settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS)


def parse_range(header: str | None, length: int | None) -> tuple[int, int]:
    """Return (start, number of bytes) from 'bytes START-END/TOTAL'; END is inclusive, as in HTTP."""
    match = RANGE_PATTERN.match((header or "").strip())
    if match is None:
        raise SubmissionError("upload_range_missing")
    start, end, total = (int(group) for group in match.groups())
    if end < start or (length is not None and length != end - start + 1):
        raise SubmissionError("upload_range_invalid", range=header, size=total)
    return start, end - start + 1


def write_range(session_id, *, range_header: str | None, length: int | None, stream) -> UploadSession:
    """Append one byte range read from `stream`; bytes that arrived before a broken connection are kept."""
    start, count = parse_range(range_header, length)
    if count > settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES:
        raise SubmissionError("upload_chunk_too_large", length=count, limit=settings.BUNDLE_UPLOAD_CHUNK_MAX_BYTES)
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session_id)
        _check_range(session, start, count, range_header)
        session.received = start + _copy_at(session, start, count, stream)
        session.save(update_fields=["received", "updated_at"])
        existing = _stored_duplicate(session)
        if existing is not None:
            close_as_duplicate(session, existing)
    return session


def _stored_duplicate(session: UploadSession) -> Submission | None:
    """Return the vendor's submission with the declared digest once every byte is received, else None."""
    if session.received != session.size:
        return None
    return Submission.objects.filter(vendor_id=session.vendor_id, sha256=session.sha256).first()


def close_as_duplicate(session: UploadSession, submission: Submission) -> None:
    """Complete a locked open upload whose digest names `submission`, audit it, and delete its bytes after the commit.

    Without this an upload whose bundle arrived another way (a single
    request, another session) would stay open until it expires, although
    completing it could only return the stored submission.
    """
    received = session.received
    session.state, session.submission, session.received = UploadSession.State.COMPLETED, submission, session.size
    session.save(update_fields=["state", "submission", "received", "updated_at"])
    record("upload.duplicate_closed", session, data={"submission": submission.pk, "sha256": session.sha256, "received": received})
    path = session.partial_path
    transaction.on_commit(lambda: path.unlink(missing_ok=True))
    logger.info("upload %s of vendor %s closed: its bundle is already submission %s", session.pk, session.vendor_id, submission.pk)


def _check_range(session: UploadSession, start: int, count: int, header: str) -> None:
    if session.state == UploadSession.State.EXPIRED:
        raise expired_error(session)
    if session.state != UploadSession.State.OPEN:
        raise SubmissionError("upload_session_completed", session=session.pk)
    if start + count > session.size:
        raise SubmissionError("upload_range_invalid", range=header, size=session.size)
    if start != session.received:
        raise SubmissionError("upload_offset_mismatch", start=start, received=session.received)


def _copy_at(session: UploadSession, start: int, count: int, stream) -> int:
    """Write up to `count` bytes at `start`, drop anything after it, sync to disk; return the bytes written."""
    path = session.partial_path
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "ab") as _create, open(path, "r+b") as target:
        target.truncate(start)
        target.seek(start)
        try:
            while written < count:
                block = stream.read(min(HASH_CHUNK_BYTES, count - written))
                if not block:
                    break
                target.write(block)
                written += len(block)
        except (OSError, UnreadablePostError) as error:
            logger.info("upload %s: connection broke after %s of %s bytes (%s)", session.pk, written, count, error)
        target.flush()
        os.fsync(target.fileno())
    return written


# Completing with these errors discards the received bytes: sending them again cannot help.
DISCARDING_ERRORS = {"upload_digest_mismatch", "bundle_not_archive"}


def complete_session(session_id, *, actor, remote_addr: str | None = None) -> tuple[Submission, bool]:
    """Check the received file against the declared size and digest, then store it as a submission."""
    try:
        return _complete(session_id, actor, remote_addr)
    except SubmissionError as error:
        if error.code in DISCARDING_ERRORS:
            _discard(session_id)
        raise


def _complete(session_id, actor, remote_addr) -> tuple[Submission, bool]:
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().select_related("vendor").get(pk=session_id)
        if session.state == UploadSession.State.COMPLETED:
            return session.submission, False
        if session.state == UploadSession.State.EXPIRED:
            raise expired_error(session)
        if session.received != session.size:
            raise SubmissionError("upload_incomplete", received=session.received, size=session.size)
        submission, created = _store(session, actor, remote_addr)
        session.state, session.submission = UploadSession.State.COMPLETED, submission
        session.save(update_fields=["state", "submission", "updated_at"])
    session.partial_path.unlink(missing_ok=True)
    return submission, created


def _store(session: UploadSession, actor, remote_addr) -> tuple[Submission, bool]:
    path = session.partial_path
    with open(path, "rb") as stream:
        actual = _digest(stream)
        if actual != session.sha256:
            raise SubmissionError("upload_digest_mismatch", actual=actual, sha256=session.sha256)
        upload = File(stream, name=session.name or f"{session.sha256}.tar")
        upload.sha256 = actual
        return receive_bundle(vendor=session.vendor, upload=upload, actor=actor, remote_addr=remote_addr)


def _digest(stream) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(HASH_CHUNK_BYTES), b""):
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest()


def _discard(session_id) -> None:
    """Forget the received bytes of a failed upload, after its transaction rolled back."""
    session = UploadSession.objects.get(pk=session_id)
    session.partial_path.unlink(missing_ok=True)
    UploadSession.objects.filter(pk=session_id).update(received=0)
    logger.info("upload %s: received bytes discarded", session_id)


# Expiry ---------------------------------------------------------------------

def expire_sessions(now=None) -> int:
    """Expire every open upload that received nothing for the configured lifetime; return how many expired.

    Open uploads with every byte received whose digest names a stored
    submission are closed first, because completing them could only return that submission.
    """
    close_duplicate_sessions()
    now = now or timezone.now()
    lifetime = timedelta(hours=settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS)
    stale = UploadSession.objects.filter(state=UploadSession.State.OPEN, updated_at__lt=now - lifetime).values_list("pk", flat=True)
    expired = sum(1 for session_id in list(stale) if expire_session(session_id, now=now))
    if expired:
        logger.info("expired %s open uploads idle for more than %s hours", expired, settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS)
    return expired


def close_duplicate_sessions() -> int:
    """Close every open upload that received all its bytes and whose digest names a submission of its vendor; return how many."""
    candidates = UploadSession.objects.filter(state=UploadSession.State.OPEN, received=F("size")).values_list("pk", flat=True)
    closed = 0
    for session_id in list(candidates):
        with transaction.atomic():
            session = UploadSession.objects.select_for_update().get(pk=session_id)
            existing = _stored_duplicate(session) if session.state == UploadSession.State.OPEN else None
            if existing is not None:
                close_as_duplicate(session, existing)
                closed += 1
    return closed


def expire_session(session_id, *, now=None) -> bool:
    """Mark one stale open upload expired under a row lock, audit it, then delete its partial file.

    Returns False when the upload is no longer open or received bytes since
    it was found stale; a concurrent range request keeps it alive.
    """
    now = now or timezone.now()
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session_id)
        if not session.is_stale(now):
            return False
        data = {"vendor": session.vendor.slug, "sha256": session.sha256, "size": session.size, "received": session.received,
                "name": session.name, "idle_since": session.updated_at.isoformat()}
        session.state, session.received = UploadSession.State.EXPIRED, 0
        session.save(update_fields=["state", "received", "updated_at"])
        record("upload.expired", session, data=data)
    session.partial_path.unlink(missing_ok=True)
    logger.info("upload %s of vendor %s expired; deleted %s received bytes", session_id, data["vendor"], data["received"])
    return True
