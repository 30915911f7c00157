"""Validation of a stored submission: verify the bundle, match vendor and card, judge, store the report.

The work runs in three steps, so a crash never loses what is stored. A short
transaction moves the submission to `validating`. The bundle is then verified
and judged outside any transaction. A second short transaction stores the one
ValidationReport and the final state. Running it again on a finished
submission does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path

from django.db import transaction

from portal.audit.services import record
from portal.evaluation.tasks import enqueue_pairs_after_verdict
from portal.registry.models import Card
from portal.registry.services import keyring_for_vendor, reference_keyring
from portal.submissions.errors import SubmissionError
from portal.submissions.models import ReferenceBundle, RulePack, Submission, ValidationReport

logger = logging.getLogger(__name__)

FINISHED_STATES = {Submission.State.JUDGED, Submission.State.REJECTED}


class Rejection(Exception):
    """A bundle that fails validation: a stable code, parameters or an English message, and a hint."""

    def __init__(self, code: str, *, params: dict | None = None, message: str = "", hint: str = ""):
        super().__init__(code)
        self.code = code
        self.params = params or {}
        self.message = message
        self.hint = hint

    @classmethod
    def from_portal_error(cls, error: SubmissionError) -> Rejection:
        return cls(error.code, params=error.params)

    @classmethod
    def from_bundle_error(cls, error) -> Rejection:
        """Keep the offending value and its details for the portal's translated sentence, and the core's English text as written."""
        value = getattr(error, "value", None)
        params = {"value": "-" if value is None else str(value)}
        params.update((name, str(detail)) for name, detail in getattr(error, "details", {}).items())
        return cls(error.code, params=params, message=getattr(error, "message", str(error)), hint=getattr(error, "hint", "") or "")

    @classmethod
    def from_records_error(cls, error) -> Rejection:
        """Keep a RecordsInvalid's English problem as the value and its Chinese text as value_zh."""
        return cls("records_invalid", params={"value": str(error), "value_zh": error.problem_zh}, message=str(error),
                   hint="pack a complete run folder written by `python -m agent run`")


def validate_submission(submission_id: int) -> Submission:
    submission = _start(submission_id)
    if submission.state in FINISHED_STATES:
        return submission

    try:
        card, rule_pack, verdict, series = _verify_and_judge(submission)
    except Rejection as rejection:
        return _finish_rejected(submission_id, rejection)
    submission = _finish_judged(submission_id, card, rule_pack, verdict, series)
    _rejudge_with_signed_off_results(submission)
    return submission


def _rejudge_with_signed_off_results(submission: Submission) -> None:
    """Judge a re-validated submission again with the human results signed off before, so its human verdict is not stale.

    A first validation has no signed-off results yet and skips this.
    """
    from portal.evaluation.services import human_results, rejudge

    if submission.state == Submission.State.JUDGED and human_results(submission):
        rejudge(submission)


def _start(submission_id: int) -> Submission:
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission_id)
        if submission.state == Submission.State.RECEIVED:
            submission.state = Submission.State.VALIDATING
            submission.save(update_fields=["state", "updated_at"])
            record("submission.validating", submission)
    return submission


def _verify_and_judge(submission: Submission) -> tuple[Card, RulePack, dict, dict]:
    from certification.bundle import BundleError, open_bundle
    from certification.criteria import RecordsInvalid
    from certification.errors import TicketError
    from portal.tickets.services import accept_ticket

    try:
        with local_path(submission.bundle) as path:
            bundle = open_bundle(path, keyring_for_vendor(submission.vendor))
            card = match_card(submission, bundle.manifest)
            rule_pack = match_rule_pack(bundle.manifest)
            accept_ticket(submission, bundle.manifest, rule_pack)
            verdict = judge_against_references(bundle, rule_pack, card)
            series = plot_series(bundle, rule_pack)
    except (BundleError, TicketError) as error:
        raise Rejection.from_bundle_error(error) from None
    except SubmissionError as error:
        raise Rejection.from_portal_error(error) from None
    except RecordsInvalid as error:
        raise Rejection.from_records_error(error) from None
    return card, rule_pack, verdict, series


def plot_series(bundle, rule_pack: RulePack) -> dict:
    """Read the loss and throughput series for the report's plots; a problem here costs the plots, not the verdict."""
    from certification.bundle import BundleError
    from portal.submissions.plots import extract_series

    try:
        with contextlib.ExitStack() as stack:
            references = [
                open_reference(stack.enter_context(local_path(reference.bundle)), rule_pack, reference.sha256)
                for reference in ReferenceBundle.objects.filter(rule_pack=rule_pack)
            ]
            return extract_series(bundle, references)
    except (BundleError, SubmissionError, ValueError, KeyError, TypeError, OverflowError) as error:
        logger.warning("no plot series for the submission's report: %s", error)
        return {}


@contextlib.contextmanager
def local_path(field):
    """Yield a local file path for a stored file, copying it out of non-local storage."""
    try:
        yield Path(field.path)
        return
    except NotImplementedError:
        pass
    with tempfile.NamedTemporaryFile(suffix=".tar") as copy:
        with field.open("rb") as stream:
            shutil.copyfileobj(stream, copy)
        copy.flush()
        yield Path(copy.name)


def manifest_vendor(manifest: dict) -> str:
    vendor = manifest.get("vendor")
    if isinstance(vendor, dict):
        return str(vendor.get("slug") or vendor.get("id") or vendor.get("name") or "")
    return str(vendor or "")


def match_card(submission: Submission, manifest: dict) -> Card:
    """Check the bundle's vendor is the uploader's and its card is registered and approved."""
    vendor = submission.vendor
    named = manifest_vendor(manifest)
    if named not in {vendor.slug, vendor.name}:
        raise SubmissionError("vendor_mismatch", bundle_vendor=named or "-", vendor=vendor.slug, vendor_name=vendor.name)

    card_info = manifest.get("card") or {}
    model, serial = str(card_info.get("model", "")), str(card_info.get("serial", ""))
    card = Card.objects.filter(vendor=vendor, model=model, serial=serial).first()
    if card is None:
        raise SubmissionError("card_not_registered", model=model or "-", serial=serial or "-", vendor=vendor.slug)
    if not card.approved:
        raise SubmissionError("card_not_approved", model=model, serial=serial)
    return card


def match_rule_pack(manifest: dict) -> RulePack:
    info = manifest.get("rule_pack") or {}
    name, sha256 = str(info.get("name", "")), str(info.get("sha256", ""))
    rule_pack = RulePack.objects.filter(name=name, sha256=sha256).first()
    if rule_pack is None:
        raise SubmissionError("rule_pack_unknown", name=name or "-", sha256=sha256 or "-")
    return rule_pack


def open_reference(path: Path, rule_pack: RulePack, sha256: str):
    """Open a reference bundle with the reference lab's keys; a failure is `reference_invalid`."""
    from certification.bundle import BundleError, open_bundle

    try:
        return open_bundle(path, reference_keyring())
    except BundleError as error:
        raise SubmissionError("reference_invalid", sha256=sha256, name=rule_pack.name, reason=error.code) from None


# Bundle error codes that mean the archive was changed after it was signed.
TAMPERED_CODES = frozenset({
    "archive_not_canonical", "envelope_not_canonical", "signature_invalid", "subject_digest_mismatch",
    "member_not_in_manifest", "member_missing", "file_size_mismatch", "file_digest_mismatch",
})
KEY_NOT_VALID_CODES = frozenset({"signature_key_revoked", "signature_key_outside_window"})


def check_reference_upload(path: Path, rule_pack: RulePack, sha256: str) -> None:
    """Verify a reference bundle that staff upload, and raise an error that names what is wrong with it."""
    from certification.bundle import BundleError, open_bundle

    try:
        open_bundle(path, reference_keyring())
    except BundleError as error:
        raise SubmissionError(
            _reference_upload_code(error.code), sha256=sha256, name=rule_pack.name, reason=error.code,
            value=error.value if error.value is not None else "-",
        ) from None


def _reference_upload_code(bundle_code: str) -> str:
    if bundle_code == "signature_key_unknown":
        return "reference_key_unknown"
    if bundle_code in KEY_NOT_VALID_CODES:
        return "reference_key_not_valid"
    if bundle_code in TAMPERED_CODES:
        return "reference_tampered"
    return "reference_unverified"


def load_judge():
    """Import the verdict engine when it is first needed, so the portal starts without it."""
    from certification.verdict import judge

    return judge


def judge_against_references(bundle, rule_pack: RulePack, card: Card, human: dict | None = None) -> dict:
    """Judge the bundle against every reference of the rule pack, each with its reference card's peaks.

    The references go to the engine oldest first. Per workload it uses the
    first one whose inputs equal the vendor's, else the first usable one,
    and records which and why in the verdict's `inputs`.

    `human` holds signed-off human evaluation results by criterion id; see portal.evaluation.
    """
    from certification.verdict import Reference

    references = list(ReferenceBundle.objects.filter(rule_pack=rule_pack).order_by("created_at", "pk"))
    if not references:
        raise SubmissionError("reference_missing", name=rule_pack.name)

    with contextlib.ExitStack() as stack:
        opened = [
            Reference(
                open_reference(stack.enter_context(local_path(reference.bundle)), rule_pack, reference.sha256),
                {dtype: float(value) for dtype, value in reference.peak_tflops.items()},
            )
            for reference in references
        ]
        verdict = load_judge()(bundle, opened, rule_pack.parsed(), card.peaks(), human)
    return verdict.to_dict()


def reject_after_time_limit(submission_id: int, seconds: int) -> Submission:
    """Store the rejection of a validation that ran past the task's time limit."""
    rejection = Rejection(
        "validation_timed_out", params={"value": seconds}, message=f"validation took longer than the limit of {seconds} s",
        hint="ask the certification staff to raise CELERY_TASK_SOFT_TIME_LIMIT; the stored bundle is kept",
    )
    return _finish_rejected(submission_id, rejection)


def _finish_rejected(submission_id: int, rejection: Rejection) -> Submission:
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission_id)
        if submission.state in FINISHED_STATES:
            return submission
        ValidationReport.objects.create(
            submission=submission, error_code=rejection.code, error_params=rejection.params,
            error_message=rejection.message, error_hint=rejection.hint,
        )
        submission.state = Submission.State.REJECTED
        submission.save(update_fields=["state", "updated_at"])
        record("submission.rejected", submission, data={"code": rejection.code, "params": rejection.params})
    logger.info("submission %s rejected: %s", submission_id, rejection.code)
    return submission


def _finish_judged(submission_id: int, card: Card, rule_pack: RulePack, verdict: dict, series: dict) -> Submission:
    with transaction.atomic():
        submission = Submission.objects.select_for_update().get(pk=submission_id)
        if submission.state in FINISHED_STATES:
            return submission
        ValidationReport.objects.create(submission=submission, verdict=verdict, series=series)
        submission.card, submission.rule_pack = card, rule_pack
        submission.state = Submission.State.JUDGED
        submission.save(update_fields=["card", "rule_pack", "state", "updated_at"])
        levels = {track: info.get("level", 0) for track, info in verdict.get("tracks", {}).items()}
        record("submission.judged", submission, data={"card": card.pk, "rule_pack": rule_pack.name, "levels": levels})
        enqueue_pairs_after_verdict(submission.pk)
    logger.info("submission %s judged: %s", submission_id, levels)
    return submission
