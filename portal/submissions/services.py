"""Receiving bundles, loading rule packs and marking reference bundles."""

from __future__ import annotations

import hashlib
import logging
import tarfile
from pathlib import Path

from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone

from certification.rulepack import available_rule_packs, load_rule_pack
from portal.audit.services import record
from portal.registry.models import Vendor
from portal.registry.services import vendors_of
from portal.submissions.errors import SubmissionError
from portal.submissions.models import ReferenceBundle, RulePack, Submission, SupersededReport, ValidationReport, reference_kind_label
from portal.submissions.notices import upload_notice

logger = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1024 * 1024


def file_sha256(stream) -> str:
    """Hash a file object from its start; the position is left at the start."""
    stream.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(HASH_CHUNK_BYTES), b""):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def ensure_tar(upload) -> None:
    """Reject an upload that is not a tar archive; the pipeline does the full verification."""
    upload.seek(0)
    is_tar = tarfile.is_tarfile(upload)
    upload.seek(0)
    if not is_tar:
        raise SubmissionError("bundle_not_archive", name=upload.name)


def uploader_vendor(user, slug: str | None = None) -> Vendor:
    """Return the vendor the user uploads for: the named one, or their only one."""
    vendors = vendors_of(user)
    names = ", ".join(vendor.slug for vendor in vendors)
    if not vendors:
        raise SubmissionError("vendor_membership_missing", user=user.get_username())
    if slug:
        for vendor in vendors:
            if vendor.slug == slug:
                return vendor
        raise SubmissionError("vendor_not_member", vendor=slug, vendors=names)
    if len(vendors) > 1:
        raise SubmissionError("vendor_ambiguous", user=user.get_username(), vendors=names)
    return vendors[0]


def receive_bundle(*, vendor: Vendor, upload, actor, remote_addr: str | None = None) -> tuple[Submission, bool]:
    """Store an uploaded bundle as a new submission and enqueue its validation.

    Returns (submission, created). The same bytes uploaded again for the same
    vendor return the stored submission with created False.
    """
    if not upload.size:
        raise SubmissionError("bundle_empty", name=upload.name or "-")
    sha256 = getattr(upload, "sha256", None) or file_sha256(upload)
    existing = Submission.objects.filter(vendor=vendor, sha256=sha256).first()
    if existing is not None:
        return existing, False

    ensure_tar(upload)
    try:
        submission = _store_submission(vendor, upload, sha256, actor, remote_addr)
    except IntegrityError:
        # A concurrent upload of the same bytes committed first.
        return Submission.objects.get(vendor=vendor, sha256=sha256), False
    return submission, True


def _store_submission(vendor, upload, sha256, actor, remote_addr) -> Submission:
    with transaction.atomic():
        submission = Submission(
            vendor=vendor, sha256=sha256, size=upload.size, original_name=(upload.name or "")[-255:], uploaded_by=actor
        )
        submission.bundle.save(f"{sha256}.tar", upload, save=False)
        submission.save()
        record(
            "submission.received",
            submission,
            actor=actor,
            data={"sha256": sha256, "size": upload.size, "name": submission.original_name, "vendor": vendor.slug},
            remote_addr=remote_addr,
        )
        transaction.on_commit(lambda: enqueue_validation(submission.pk))
    logger.info("submission %s received from vendor %s (%s bytes)", submission.pk, vendor.slug, upload.size)
    return submission


def request_revalidation(submission_id: int, *, actor, remote_addr: str | None = None) -> Submission:
    """Send a judged or rejected submission through validation again, for example after a card's peaks or a reference changed.

    Under a row lock the old report is moved whole into a SupersededReport
    (verdict, times, who asked, rule pack) and the state returns to
    `received`. The audit entry keeps the old outcome in short. The validation
    task is queued after the commit. A submission still in validation, or one
    that a valid certificate was issued from, is left as it is.
    """
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission_id)
        if submission.state not in (Submission.State.JUDGED, Submission.State.REJECTED):
            raise SubmissionError("revalidation_in_progress", submission=submission.pk, state=submission.get_state_display())
        certificate = submission.certificates.filter(revoked_at__isnull=True).first()
        if certificate is not None:
            raise SubmissionError("revalidation_certified", submission=submission.pk, certificate=certificate.number)
        _revalidate_locked(submission, actor, remote_addr, {})
    logger.info("submission %s sent to validation again by %s", submission_id, actor.get_username())
    return submission


# Rejections whose cause lies outside the bundle, so the vendor or the staff can remove it without a new
# bundle: a signing key or card registered or approved, a rule pack published, a reference added or
# replaced, a stored file that could not be read. Uploading the same bundle again validates it again.
# Every other rejection comes from the bundle's own bytes or its used or expired ticket and cannot change.
# validation_timed_out is left to the staff, who decide whether to raise the limit.
REVALIDATE_ON_UPLOAD_CODES = frozenset({
    "signature_key_unknown", "card_not_registered", "card_not_approved", "rule_pack_unknown",
    "reference_missing", "reference_invalid", "archive_unreadable",
})


def revalidate_on_upload(submission_id: int, *, actor, remote_addr: str | None = None) -> str:
    """Validate a rejected submission again when its bundle is uploaded again and its rejection code is in REVALIDATE_ON_UPLOAD_CODES.

    Returns the code of the rejection that was replaced, or "" when nothing
    was queued. Like the staff's "validate again", the old report is kept as
    a SupersededReport and the task runs after the commit. Any other
    submission is left as it is.
    """
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission_id)
        report = ValidationReport.objects.filter(submission=submission).first()
        if submission.state != Submission.State.REJECTED or report is None or report.error_code not in REVALIDATE_ON_UPLOAD_CODES:
            return ""
        _revalidate_locked(submission, actor, remote_addr, {"reason": "uploaded_again"})
    logger.info("submission %s uploaded again by %s after rejection %s; validating it again", submission_id, actor.get_username(), report.error_code)
    return report.error_code


def notice_for_upload_again(submission_id: int, *, actor, remote_addr: str | None = None) -> dict:
    """Validate a submission whose bundle was uploaded again if the cause of its rejection may have been fixed; return the notice for the uploader."""
    return upload_notice(submission_id, revalidate_on_upload(submission_id, actor=actor, remote_addr=remote_addr))


def _revalidate_locked(submission: Submission, actor, remote_addr: str | None, extra: dict) -> None:
    """Supersede the report of a locked submission, return it to `received`, audit it and queue its validation after the commit."""
    previous = _previous_outcome(submission)
    superseded = _supersede_report(submission, actor)
    submission.state = Submission.State.RECEIVED
    submission.save(update_fields=["state", "updated_at"])
    data = {**previous, **extra, "superseded_report": superseded.pk if superseded else None}
    record("submission.revalidation_requested", submission, actor=actor, remote_addr=remote_addr, data=data)
    transaction.on_commit(lambda: enqueue_validation(submission.pk))


def _supersede_report(submission: Submission, actor) -> SupersededReport | None:
    """Copy the submission's report into a SupersededReport and delete it; None when there is no report."""
    report = ValidationReport.objects.filter(submission=submission).first()
    if report is None:
        return None
    superseded = SupersededReport.objects.create(
        submission=submission, state=submission.state, verdict=report.verdict,
        error_code=report.error_code, error_params=report.error_params, error_message=report.error_message, error_hint=report.error_hint,
        rule_pack=submission.rule_pack, rule_pack_sha256=submission.rule_pack.sha256 if submission.rule_pack else "",
        judged_at=report.created_at, superseded_at=timezone.now(), superseded_by=actor,
    )
    report.delete()
    return superseded


def _previous_outcome(submission: Submission) -> dict:
    report = ValidationReport.objects.filter(submission=submission).first()
    levels = {track: info.get("level", 0) for track, info in ((report.verdict or {}).get("tracks") or {}).items()} if report else {}
    return {"previous_state": submission.state, "previous_error_code": report.error_code if report else "", "previous_levels": levels}


def enqueue_validation(submission_id: int) -> None:
    from portal.submissions.tasks import validate_submission

    validate_submission.delay(submission_id)


def load_rule_packs(*, actor=None) -> list[RulePack]:
    """Load every shipped rule pack; a published pack never changes, so a changed file is skipped with a warning."""
    return [pack for pack in (_load_rule_pack(name, actor) for name in available_rule_packs()) if pack]


@transaction.atomic
def _load_rule_pack(name: str, actor) -> RulePack | None:
    pack = load_rule_pack(name)
    stored = RulePack.objects.filter(name=pack.name).first()
    if stored is not None:
        if stored.sha256 != pack.sha256:
            logger.warning(
                "rule pack %s on disk (sha256 %s) differs from the published one (sha256 %s); keeping the published one",
                pack.name, pack.sha256, stored.sha256,
            )
        return stored
    stored = RulePack.objects.create(
        name=pack.name, sha256=pack.sha256, text=pack.text, reference_kind=pack.reference_kind
    )
    record("rule_pack.loaded", stored, actor=actor, data={"sha256": pack.sha256})
    return stored


def reference_label(kind: str) -> str:
    """Return the stored English label of a reference; a CPU demo reference is never called A800."""
    return {"cpu-demo": "CPU demo reference", "a800": "A800 reference"}.get(kind, f"{kind} reference")


def add_reference(
    bundle_path: Path, *, rule_pack: RulePack, peak_tflops: dict[str, float], actor=None, remote_addr: str | None = None
) -> tuple[ReferenceBundle, bool]:
    """Verify a reference bundle against the reference lab's keys and mark it as a reference of `rule_pack`."""
    from portal.submissions.pipeline import check_reference_upload

    with open(bundle_path, "rb") as stream:
        sha256 = file_sha256(stream)
    existing = ReferenceBundle.objects.filter(rule_pack=rule_pack, sha256=sha256).first()
    if existing is not None:
        return existing, False

    check_reference_upload(bundle_path, rule_pack, sha256)
    with transaction.atomic(), open(bundle_path, "rb") as stream:
        reference = ReferenceBundle(
            rule_pack=rule_pack, sha256=sha256, peak_tflops=peak_tflops,
            label=reference_label(rule_pack.reference_kind), created_by=actor,
        )
        reference.bundle.save(f"{sha256}.tar", File(stream), save=False)
        reference.save()
        record("reference.added", reference, actor=actor, remote_addr=remote_addr, data={
            "rule_pack": rule_pack.name, "sha256": sha256, "peak_tflops": peak_tflops, "label": reference.label,
        })
    logger.info("reference bundle %s added to rule pack %s (%s)", sha256, rule_pack.name, reference_kind_label(rule_pack.reference_kind))
    return reference, True
