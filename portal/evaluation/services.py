"""Human evaluation workflows: build blind pairs, record judgements, adjudicate, sign off, judge again."""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

import certification.verdict  # noqa: F401  (registers every metric, the SD ones included)
from certification.criteria import human_pass_rule, needs_human_evaluation, sign_test_p_value
from portal.audit.services import record
from portal.permissions import is_reviewer
from portal.evaluation.errors import EvaluationError
from portal.evaluation.models import Adjudication, EvaluationSet, HumanVerdict, Judgement, Outcome, Pair, SignOff, vendor_side_for
from portal.evaluation.pairs import PAIR_SOURCES
from portal.submissions.models import ReferenceBundle, Submission
from portal.text import first_control_character

logger = logging.getLogger(__name__)

DISPUTED = "disputed"


def _require_staff(user) -> None:
    if not is_reviewer(user):
        raise EvaluationError("not_staff", user=user.get_username() or "anonymous")


def effective_verdict(submission: Submission) -> dict:
    """Return the newest verdict judged with signed-off human results, else the pipeline's verdict."""
    latest = submission.human_verdicts.first()
    if latest is not None:
        return latest.verdict
    report = getattr(submission, "report", None)
    return (report.verdict if report is not None else None) or {}


def human_criteria(submission: Submission) -> list[dict]:
    """Return the verdict items that people can judge: human criteria that apply and whose workload the vendor ran.

    The verdict sets `details.missing_workload` on every criterion of a
    workload that the vendor bundle lacks (pending when the run did not plan
    it, failed when it did), and such a criterion has no outputs to pair.
    """
    report = getattr(submission, "report", None)
    items = (report.criteria if report is not None else None) or []
    return [item for item in items if _judged_by_people(item)]


def _judged_by_people(item: dict) -> bool:
    if not needs_human_evaluation(item.get("metric", "")) or item.get("status") == "not_applicable":
        return False
    return "missing_workload" not in (item.get("details") or {})


def missing_sets(submission: Submission) -> list[str]:
    """Return the ids of the human criteria of a judged submission that have no evaluation set yet."""
    built = set(submission.evaluation_sets.values_list("criterion_id", flat=True))
    return [item["id"] for item in human_criteria(submission) if item["id"] not in built]


# Building pairs --------------------------------------------------------------


def build_sets(submission: Submission, *, actor) -> list[EvaluationSet]:
    """Create the blind pairs of every human criterion of a judged submission; existing sets are kept."""
    _require_staff(actor)
    if submission.state != Submission.State.JUDGED:
        raise EvaluationError("submission_not_judged", submission=submission.pk, state=Submission.State(submission.state).label)
    criteria = human_criteria(submission)
    if not criteria:
        raise EvaluationError("no_human_criteria", submission=submission.pk)

    with _opened_bundles(submission) as (vendor_bundle, reference_bundles):
        # A workload the vendor did not run has nothing to judge; its criteria fail on their own.
        present = set(vendor_bundle.workloads())
        sets = [_build_set(submission, item, vendor_bundle, reference_bundles, actor) for item in criteria if item["workload"] in present]
    if not sets:
        raise EvaluationError("no_human_criteria", submission=submission.pk)
    return sets


def build_sets_after_verdict(submission_id: int) -> list[EvaluationSet]:
    """Build the missing pairs of a newly judged submission, without an actor; safe to run more than once.

    A criterion whose pairs cannot be built (no reference outputs yet, say) is
    logged and skipped, so staff can build it later with the button.
    """
    submission = Submission.objects.select_related("report", "rule_pack", "vendor").get(pk=submission_id)
    missing = missing_sets(submission) if submission.state == Submission.State.JUDGED else []
    if not missing:
        return []
    criteria = [item for item in human_criteria(submission) if item["id"] in missing]
    built = []
    with _opened_bundles(submission) as (vendor_bundle, reference_bundles):
        present = set(vendor_bundle.workloads())
        for item in criteria:
            if item["workload"] not in present:
                continue
            try:
                built.append(_build_set(submission, item, vendor_bundle, reference_bundles, None))
            except EvaluationError as error:
                logger.warning("submission %s: no pairs built for %s: %s %s", submission_id, item["id"], error.code, error.params)
    return built


@contextlib.contextmanager
def _opened_bundles(submission: Submission):
    from certification.bundle import open_bundle
    from portal.registry.services import keyring_for_vendor
    from portal.submissions.pipeline import local_path, open_reference

    references = ReferenceBundle.objects.filter(rule_pack=submission.rule_pack)
    with contextlib.ExitStack() as stack:
        vendor_bundle = open_bundle(stack.enter_context(local_path(submission.bundle)), keyring_for_vendor(submission.vendor))
        opened = [open_reference(stack.enter_context(local_path(item.bundle)), submission.rule_pack, item.sha256) for item in references]
        yield vendor_bundle, opened


def _build_set(submission, criterion: dict, vendor_bundle, reference_bundles, actor) -> EvaluationSet:
    existing = EvaluationSet.objects.filter(submission=submission, criterion_id=criterion["id"]).first()
    if existing is not None:
        return existing
    workload = criterion["workload"]
    kind = submission.rule_pack.parsed().workload(workload)["kind"]
    if kind not in PAIR_SOURCES:
        raise EvaluationError("pairs_unsupported", workload=workload, kind=kind)
    media, source = PAIR_SOURCES[kind]
    prompt_pairs = next((pairs for pairs in (list(source(vendor_bundle, reference, workload)) for reference in reference_bundles) if pairs), [])
    if not prompt_pairs:
        raise EvaluationError("pairs_missing", workload=workload)
    try:
        return _store_set(submission, criterion, workload, media, prompt_pairs, actor)
    except IntegrityError:
        # Another build (the automatic one, or a second click) stored this set first.
        return EvaluationSet.objects.get(submission=submission, criterion_id=criterion["id"])


@transaction.atomic
def _store_set(submission, criterion, workload, media, prompt_pairs, actor) -> EvaluationSet:
    evaluation_set = EvaluationSet.objects.create(
        submission=submission, criterion_id=criterion["id"], workload=workload, media=media, seed=secrets.randbits(48)
    )
    Pair.objects.bulk_create([_blind_pair(evaluation_set, position, item) for position, item in enumerate(prompt_pairs, start=1)])
    identical = evaluation_set.pairs.filter(identical=True).count()
    record("evaluation.pairs_built", evaluation_set, actor=actor, data={
        "submission": submission.pk, "criterion": criterion["id"], "pairs": len(prompt_pairs), "identical": identical,
    })
    logger.info("built %s pairs (%s identical) for %s of submission %s", len(prompt_pairs), identical, criterion["id"], submission.pk)
    return evaluation_set


def _blind_pair(evaluation_set: EvaluationSet, position: int, item) -> Pair:
    side = vendor_side_for(evaluation_set.seed, position)
    left, right = (item.vendor, item.reference) if side == "left" else (item.reference, item.vendor)
    return Pair(
        evaluation_set=evaluation_set, position=position, prompt_id=item.prompt_id, prompt=item.prompt,
        left=left, right=right, vendor_side=side, identical=item.vendor.encode() == item.reference.encode(),
    )


# Judging -----------------------------------------------------------------------


def record_judgement(pair: Pair, reviewer, left_judgement: str) -> Judgement:
    """Store a reviewer's judgement of the left output against the right one, converted to the vendor's view."""
    _require_staff(reviewer)
    if left_judgement not in Outcome.values:
        raise EvaluationError("outcome_invalid", value=left_judgement)
    if pair.identical:
        raise EvaluationError("pair_identical", position=pair.position)
    _require_open(pair.evaluation_set)
    judgement, _created = Judgement.objects.update_or_create(
        pair=pair, reviewer=reviewer, defaults={"outcome": pair.to_vendor_view(left_judgement)}
    )
    return judgement


def _require_open(evaluation_set: EvaluationSet) -> None:
    current = evaluation_set.current_sign_off()
    if current is not None:
        raise EvaluationError("set_signed_off", set=evaluation_set.pk, signer=current.signer_name)


@dataclass
class Progress:
    total: int
    judged: int
    resume_at: int | None  # the first pair position this reviewer has not judged

    @property
    def percent(self) -> int:
        return round(100 * self.judged / self.total) if self.total else 100


def reviewer_progress(evaluation_set: EvaluationSet, reviewer) -> Progress:
    to_judge = list(evaluation_set.pairs.filter(identical=False).values_list("position", flat=True))
    done = set(Judgement.objects.filter(pair__evaluation_set=evaluation_set, reviewer=reviewer).values_list("pair__position", flat=True))
    remaining = [position for position in to_judge if position not in done]
    return Progress(total=len(to_judge), judged=len(to_judge) - len(remaining), resume_at=remaining[0] if remaining else None)


def final_outcome(pair: Pair) -> str | None:
    """Return the pair's outcome for the vendor, DISPUTED while reviewers disagree, or None while unjudged."""
    if pair.identical:
        return Outcome.SAME
    adjudication = getattr(pair, "adjudication", None)
    if adjudication is not None:
        return adjudication.outcome
    outcomes = {judgement.outcome for judgement in pair.judgements.all()}
    if not outcomes:
        return None
    return outcomes.pop() if len(outcomes) == 1 else DISPUTED


@dataclass
class Tally:
    good: int = 0
    same: int = 0
    bad: int = 0
    identical: int = 0
    unjudged: int = 0
    disputed: list[Pair] = field(default_factory=list)
    rule: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.good + self.same + self.bad

    @property
    def gsb(self) -> float | None:
        return (self.good - self.bad) / self.total if self.total else None

    @property
    def p_value(self) -> float:
        return sign_test_p_value(self.good, self.bad)

    @property
    def complete(self) -> bool:
        return self.unjudged == 0 and not self.disputed

    @property
    def meets_rule(self) -> bool:
        return self.total >= self.rule["min_pairs"] and self.gsb is not None and self.gsb >= self.rule["gsb_min"] and self.p_value >= self.rule["alpha"]


def pass_rule(evaluation_set: EvaluationSet) -> dict:
    """Return the rule pack's pass rule for the set's criterion, as the verdict engine applies it."""
    submission = evaluation_set.submission
    pack_settings = submission.rule_pack.parsed().data.get("settings", {})
    metric = next((item.get("metric", "") for item in human_criteria(submission) if item["id"] == evaluation_set.criterion_id), "human_gsb")
    return human_pass_rule(pack_settings, metric)


def tally(evaluation_set: EvaluationSet) -> Tally:
    result = Tally(rule=pass_rule(evaluation_set))
    for pair in evaluation_set.pairs.prefetch_related("judgements").select_related("adjudication"):
        outcome = final_outcome(pair)
        result.identical += pair.identical
        if outcome is None:
            result.unjudged += 1
        elif outcome == DISPUTED:
            result.disputed.append(pair)
        else:
            setattr(result, outcome, getattr(result, outcome) + 1)
    return result


@transaction.atomic
def adjudicate(pair: Pair, *, outcome: str, decided_by, note: str = "") -> Adjudication:
    """Decide a disputed pair; the outcome is from the vendor's point of view."""
    _require_staff(decided_by)
    if outcome not in Outcome.values:
        raise EvaluationError("outcome_invalid", value=outcome)
    character = first_control_character(note, allow_whitespace=True)
    if character is not None:
        raise EvaluationError("note_invalid", character=character)
    _require_open(pair.evaluation_set)
    if getattr(pair, "adjudication", None) is None and final_outcome(pair) != DISPUTED:
        raise EvaluationError("no_disagreement", position=pair.position)
    adjudication, _created = Adjudication.objects.update_or_create(pair=pair, defaults={"outcome": outcome, "decided_by": decided_by, "note": note})
    record("evaluation.adjudicated", pair.evaluation_set, actor=decided_by, data={"pair": pair.position, "outcome": outcome, "note": note})
    return adjudication


# Sign-off ------------------------------------------------------------------------


def sign_off(evaluation_set: EvaluationSet, *, signer, password: str, statement: str, remote_addr: str | None = None) -> SignOff:
    """Record a named staff member's sign-off after checking their password, then judge the submission again."""
    _require_staff(signer)
    if not signer.check_password(password):
        logger.warning("sign-off of evaluation set %s by %s rejected: wrong password", evaluation_set.pk, signer.get_username())
        raise EvaluationError("password_invalid", user=signer.get_username())
    if not statement.strip():
        raise EvaluationError("statement_missing")
    character = first_control_character(statement, allow_whitespace=True)
    if character is not None:
        raise EvaluationError("statement_invalid", character=character)
    counts = tally(evaluation_set)
    if not counts.complete:
        raise EvaluationError("set_incomplete", unjudged=counts.unjudged, disputed=len(counts.disputed))

    with transaction.atomic():
        signed = _store_sign_off(evaluation_set, signer, statement.strip(), counts, remote_addr)
    rejudge(evaluation_set.submission, actor=signer)
    return signed


def _store_sign_off(evaluation_set, signer, statement, counts: Tally, remote_addr) -> SignOff:
    previous = SignOff.objects.select_for_update().filter(evaluation_set=evaluation_set).order_by("-created_at", "-id").first()
    signed = SignOff.objects.create(
        evaluation_set=evaluation_set, signer=signer, signer_name=signer.get_full_name() or signer.get_username(),
        statement=statement, good=counts.good, same=counts.same, bad=counts.bad, gsb=counts.gsb or 0.0,
        p_value=counts.p_value, supersedes=previous,
    )
    record("evaluation.signed_off", evaluation_set, actor=signer, remote_addr=remote_addr, data={
        "sign_off": signed.pk, "criterion": evaluation_set.criterion_id, "submission": evaluation_set.submission_id,
        "good": counts.good, "same": counts.same, "bad": counts.bad, "gsb": counts.gsb, "p_value": counts.p_value,
        "statement": statement, "supersedes": previous.pk if previous else None,
    })
    return signed


def human_results(submission: Submission) -> dict[str, dict]:
    """Return the current sign-off of every set of the submission in the verdict engine's form."""
    results = {}
    for evaluation_set in submission.evaluation_sets.all():
        current = evaluation_set.current_sign_off()
        if current is not None:
            results[evaluation_set.criterion_id] = current.as_human_result()
    return results


def rejudge(submission: Submission, *, actor=None) -> HumanVerdict:
    """Judge the submission's bundle again with the signed-off human results and store that verdict."""
    from certification.bundle import open_bundle
    from portal.registry.services import keyring_for_vendor
    from portal.submissions.pipeline import judge_against_references, local_path

    human = human_results(submission)
    with local_path(submission.bundle) as path:
        bundle = open_bundle(path, keyring_for_vendor(submission.vendor))
        verdict = judge_against_references(bundle, submission.rule_pack, submission.card, human)
    with transaction.atomic():
        stored = HumanVerdict.objects.create(submission=submission, verdict=verdict, human=human)
        levels = {track: info.get("level", 0) for track, info in verdict.get("tracks", {}).items()}
        record("submission.rejudged", submission, actor=actor, data={"human": human, "levels": levels})
    logger.info("submission %s judged again with human results: %s", submission.pk, levels)
    not_passing = [(item["id"], item["status"], item["details"].get("code")) for item in verdict.get("criteria", []) if item.get("status") in ("fail", "refused")]
    if not_passing:
        logger.info("submission %s: criteria not passing after judging again: %s", submission.pk, not_passing)
    return stored
