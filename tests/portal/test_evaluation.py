"""Human evaluation: blind pairs, judgements, disagreements, sign-off, and the verdict judged again."""

import pytest
from django.urls import reverse

from portal.audit.models import AuditEntry
from portal.certificates.errors import CertificateError
from portal.certificates.services import issue_certificate
from portal.evaluation.errors import EvaluationError
from portal.evaluation.models import EvaluationSet, ImmutableError, Outcome, SignOff, vendor_side_for
from portal.evaluation.services import adjudicate, build_sets, effective_verdict, missing_sets, record_judgement, reviewer_progress, sign_off, tally
from portal.registry.roles import REVIEWERS, grant

from .conftest import PASSWORD, login, make_user
from .helpers_gsb import DIFFERING_POSITIONS, HUMAN_CRITERION, build_human_bundles, judged_human_submission


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return build_human_bundles(tmp_path_factory.mktemp("human"))


@pytest.fixture
def submission(bundles, vendor, reference_lab, card, owner):
    return judged_human_submission(bundles, vendor=vendor, reference_lab=reference_lab, owner=owner)


@pytest.fixture
def evaluation_set(submission, staff):
    return build_sets(submission, actor=staff)[0]


@pytest.fixture
def second_reviewer(db):
    user = make_user("reviewer2", is_staff=True)
    grant(user, REVIEWERS)
    return user


def judge_all(evaluation_set, reviewer, vendor_outcomes: dict[int, str]):
    """Judge pairs as the reviewer would see them: the vendor outcome converted to the left view."""
    for pair in evaluation_set.pairs.filter(identical=False):
        record_judgement(pair, reviewer, pair.to_vendor_view(vendor_outcomes[pair.position]))


def criterion(verdict: dict, criterion_id: str) -> dict:
    return next(item for item in verdict["criteria"] if item["id"] == criterion_id)


def test_pipeline_leaves_human_pending(submission):
    assert submission.state == "judged"
    assert criterion(submission.report.verdict, HUMAN_CRITERION)["status"] == "pending"
    assert submission.report.track_level("finetuning") == 0


def test_unrun_workloads_need_no_pairs(client, submission, evaluation_set, staff):
    # The pack's SD criteria are pending only because this run did not include the SD workloads.
    unrun = [item for item in submission.report.criteria if item.get("details", {}).get("code") == "workload_not_run"]
    assert {"sd-sft.human", "sd-infer.human"} <= {item["id"] for item in unrun}

    assert missing_sets(submission) == []
    page = login(client, staff).get(reverse("evaluation-index")).content.decode()
    assert "sd-sft.human" not in page
    assert 'id="waiting"' in page
    assert f"#{submission.pk}</td>" not in page.split('id="waiting"')[1].split("</table>")[0]


def test_pairs_built_with_identical_as_same(evaluation_set):
    pairs = list(evaluation_set.pairs.all())
    assert len(pairs) == 6
    assert [pair.position for pair in pairs if not pair.identical] == DIFFERING_POSITIONS
    counts = tally(evaluation_set)
    assert counts.same == 3
    assert counts.identical == 3
    assert counts.unjudged == 3
    assert AuditEntry.objects.filter(action="evaluation.pairs_built").exists()


def test_sides_follow_stored_seed(evaluation_set):
    for pair in evaluation_set.pairs.all():
        assert pair.vendor_side == vendor_side_for(evaluation_set.seed, pair.position)
    sides = {vendor_side_for(12345, position) for position in range(1, 40)}
    assert sides == {"left", "right"}


def test_vendor_output_on_its_side(evaluation_set):
    pair = evaluation_set.pairs.get(position=3)
    vendor_text = pair.left if pair.vendor_side == "left" else pair.right
    assert vendor_text == "the cat sat on the mat in 2024!"


def test_build_twice_keeps_set(submission, evaluation_set, staff):
    again = build_sets(submission, actor=staff)[0]
    assert again.pk == evaluation_set.pk
    assert again.seed == evaluation_set.seed


def test_build_refused_for_vendor(submission, owner):
    with pytest.raises(EvaluationError) as raised:
        build_sets(submission, actor=owner)
    assert raised.value.code == "not_staff"


def test_judgement_converted_to_vendor_view(evaluation_set, staff):
    pair = evaluation_set.pairs.get(position=3)
    record_judgement(pair, staff, "good")
    expected = Outcome.GOOD if pair.vendor_side == "left" else Outcome.BAD
    assert pair.judgements.get().outcome == expected


@pytest.mark.parametrize("value, code", [("great", "outcome_invalid"), ("", "outcome_invalid")])
def test_judgement_rejects_bad_values(evaluation_set, staff, value, code):
    with pytest.raises(EvaluationError) as raised:
        record_judgement(evaluation_set.pairs.get(position=3), staff, value)
    assert raised.value.code == code


def test_identical_pair_needs_no_judgement(evaluation_set, staff):
    with pytest.raises(EvaluationError) as raised:
        record_judgement(evaluation_set.pairs.get(position=1), staff, "good")
    assert raised.value.code == "pair_identical"


def test_progress_resumes_at_first_unjudged(evaluation_set, staff):
    record_judgement(evaluation_set.pairs.get(position=3), staff, "same")
    progress = reviewer_progress(evaluation_set, staff)
    assert (progress.judged, progress.total, progress.resume_at) == (1, 3, 4)


def test_disagreement_listed_then_adjudicated(evaluation_set, staff, second_reviewer):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    judge_all(evaluation_set, second_reviewer, {3: "bad", 4: "same", 5: "same"})
    counts = tally(evaluation_set)
    assert [pair.position for pair in counts.disputed] == [3]
    adjudicate(evaluation_set.pairs.get(position=3), outcome="good", decided_by=staff, note="typo only")
    counts = tally(evaluation_set)
    assert counts.disputed == []
    assert (counts.good, counts.same, counts.bad) == (1, 5, 0)


@pytest.mark.parametrize("note", ["a\x00b", "a\x07b"])
def test_adjudication_note_control_character(evaluation_set, staff, second_reviewer, note):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    judge_all(evaluation_set, second_reviewer, {3: "bad", 4: "same", 5: "same"})
    with pytest.raises(EvaluationError) as raised:
        adjudicate(evaluation_set.pairs.get(position=3), outcome="good", decided_by=staff, note=note)
    assert raised.value.code == "note_invalid"
    assert not AuditEntry.objects.filter(action="evaluation.adjudicated").exists()


def test_adjudication_note_keeps_line_breaks(evaluation_set, staff, second_reviewer):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    judge_all(evaluation_set, second_reviewer, {3: "bad", 4: "same", 5: "same"})
    adjudication = adjudicate(evaluation_set.pairs.get(position=3), outcome="good", decided_by=staff, note="typo only\r\n\tline two")
    assert adjudication.note == "typo only\r\n\tline two"


def test_adjudication_only_for_disagreements(evaluation_set, staff):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    with pytest.raises(EvaluationError) as raised:
        adjudicate(evaluation_set.pairs.get(position=4), outcome="bad", decided_by=staff)
    assert raised.value.code == "no_disagreement"


@pytest.mark.parametrize("password, statement, code", [
    ("wrong-password", "checked", "password_invalid"),
    (PASSWORD, "   ", "statement_missing"),
    (PASSWORD, "checked\x00", "statement_invalid"),
    (PASSWORD, "checked\x1b[31m", "statement_invalid"),
])
def test_sign_off_refusals(evaluation_set, staff, password, statement, code):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    with pytest.raises(EvaluationError) as raised:
        sign_off(evaluation_set, signer=staff, password=password, statement=statement)
    assert raised.value.code == code
    assert SignOff.objects.count() == 0


def test_sign_off_refused_while_incomplete(evaluation_set, staff):
    with pytest.raises(EvaluationError) as raised:
        sign_off(evaluation_set, signer=staff, password=PASSWORD, statement="checked")
    assert raised.value.code == "set_incomplete"


def test_sign_off_rejudges_and_allows_certificate(submission, evaluation_set, staff):
    with pytest.raises(CertificateError):
        issue_certificate(submission=submission, track="finetuning", level=1, issued_by=staff)

    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    signed = sign_off(evaluation_set, signer=staff, password=PASSWORD, statement="我已核对全部样本。")
    assert (signed.good, signed.same, signed.bad) == (1, 5, 0)
    assert signed.gsb == pytest.approx(1 / 6)

    verdict = effective_verdict(submission)
    assert criterion(verdict, HUMAN_CRITERION)["status"] == "pass"
    assert verdict["tracks"]["finetuning"]["level"] >= 1
    entry = AuditEntry.objects.get(action="evaluation.signed_off")
    assert entry.actor == staff
    assert entry.data["statement"] == "我已核对全部样本。"

    certificate = issue_certificate(submission=submission, track="finetuning", level=1, issued_by=staff)
    assert any(item["id"] == HUMAN_CRITERION for item in certificate.key_figures)


def test_failing_gsb_blocks_level(submission, evaluation_set, staff):
    judge_all(evaluation_set, staff, {3: "bad", 4: "bad", 5: "bad"})
    sign_off(evaluation_set, signer=staff, password=PASSWORD, statement="vendor outputs are worse")
    verdict = effective_verdict(submission)
    assert criterion(verdict, HUMAN_CRITERION)["status"] == "fail"
    assert verdict["tracks"]["finetuning"]["level"] == 0


def test_sign_off_cannot_be_edited(evaluation_set, staff):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    signed = sign_off(evaluation_set, signer=staff, password=PASSWORD, statement="checked")
    signed.statement = "changed"
    with pytest.raises(ImmutableError):
        signed.save()
    with pytest.raises(ImmutableError):
        signed.delete()


def test_judgements_closed_after_sign_off(evaluation_set, staff):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    sign_off(evaluation_set, signer=staff, password=PASSWORD, statement="checked")
    with pytest.raises(EvaluationError) as raised:
        record_judgement(evaluation_set.pairs.get(position=3), staff, "bad")
    assert raised.value.code == "set_signed_off"


def test_new_sign_off_supersedes(evaluation_set, staff, second_reviewer):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    first = sign_off(evaluation_set, signer=staff, password=PASSWORD, statement="first")
    second = sign_off(evaluation_set, signer=second_reviewer, password=PASSWORD, statement="second look")
    assert second.supersedes == first
    assert evaluation_set.current_sign_off() == second
    assert SignOff.objects.get(pk=first.pk).statement == "first"


def test_review_page_hides_platforms(client, evaluation_set, staff, submission):
    page = login(client, staff).get(reverse("evaluation-review", args=[evaluation_set.pk])).content.decode()
    assert "G ·" in page
    assert "id=\"progress\"" in page
    assert submission.vendor.name not in page
    assert "vendor_side" not in page
    assert "reference-lab" not in page


def test_review_page_in_english(client, evaluation_set, staff):
    login(client, staff)
    client.cookies["django_language"] = "en"
    page = client.get(reverse("evaluation-review", args=[evaluation_set.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "left is better" in page


@pytest.mark.parametrize("persona, status", [("owner", 403), ("outsider", 403), ("anonymous", 302)])
def test_staff_pages_refuse_others(client, evaluation_set, owner, outsider, persona, status):
    if persona != "anonymous":
        login(client, {"owner": owner, "outsider": outsider}[persona])
    for url in [reverse("evaluation-set", args=[evaluation_set.pk]), reverse("evaluation-review", args=[evaluation_set.pk])]:
        assert client.get(url).status_code == status


def test_set_page_shows_rule_and_disagreements(client, evaluation_set, staff, second_reviewer):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    judge_all(evaluation_set, second_reviewer, {3: "bad", 4: "same", 5: "same"})
    page = login(client, staff).get(reverse("evaluation-set", args=[evaluation_set.pk])).content.decode()
    assert 'id="disagreements"' in page
    assert 'id="pass-rule"' in page
    assert "-0.05" in page


def test_sign_off_page_with_wrong_password(client, evaluation_set, staff):
    judge_all(evaluation_set, staff, {3: "good", 4: "same", 5: "same"})
    login(client, staff).post(reverse("evaluation-sign-off", args=[evaluation_set.pk]), {"statement": "ok", "password": "nope"})
    assert SignOff.objects.count() == 0
    assert EvaluationSet.objects.get().current_sign_off() is None
