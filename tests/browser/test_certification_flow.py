"""The certification path in a real browser: upload, blind review by keyboard, sign-off, certificate, public pages."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from portal.certificates.models import Certificate
from portal.evaluation.models import EvaluationSet, SignOff
from portal.evaluation.services import build_sets
from portal.registry.models import Card, Membership, Vendor
from portal.registry.roles import REVIEWERS, grant
from portal.submissions.models import Submission
from tests.portal.helpers_gsb import HumanBundles, build_human_bundles, judged_human_submission, register_bundle_keys, store_human_pack

from .conftest import log_in, switch_language

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> HumanBundles:
    return build_human_bundles(tmp_path_factory.mktemp("browser"))


@pytest.fixture
def world(db):
    users = get_user_model().objects
    vendor = Vendor.objects.create(slug="acme", name="Acme 芯片")
    reference_lab = Vendor.objects.create(slug="reference-lab", name="Reference lab", is_reference_lab=True)
    Card.objects.create(vendor=vendor, model="X100", serial="sn-1", peak_tflops={"fp32": 2.0}, approved=True)
    owner = users.create_user("owner", password=PASSWORD)
    Membership.objects.create(vendor=vendor, user=owner)
    staff = users.create_user("reviewer", password=PASSWORD, first_name="Li", last_name="Wei")
    grant(staff, REVIEWERS)
    return {"vendor": vendor, "reference_lab": reference_lab, "owner": owner, "staff": staff}


def submit_and_wait(page, selector: str) -> None:
    """Click a submit button and wait until the reply page has loaded.

    A bare wait_for_load_state() returns at once while the old page is still
    shown, so the test would read the database before the request finished.
    """
    with page.expect_navigation():
        page.click(selector)


def press(page, key: str) -> None:
    """Press a shortcut key and wait for the navigation it starts."""
    with page.expect_navigation(wait_until="commit"):
        page.keyboard.press(key)
    page.wait_for_load_state()


def test_vendor_uploads_through_page(page, world, bundles):
    register_bundle_keys(bundles, vendor=world["vendor"], reference_lab=world["reference_lab"])
    store_human_pack()
    from portal.submissions.services import add_reference
    from portal.submissions.models import RulePack

    add_reference(bundles.reference, rule_pack=RulePack.objects.get(name="demo-human-2026.1"), peak_tflops={"fp32": 2.0})

    log_in(page, "owner", PASSWORD)
    page.goto("/submissions/upload/")
    page.set_input_files("input[type=file]", str(bundles.vendor))
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r"/submissions/\d+/$"))

    submission = Submission.objects.get()
    assert submission.state == "judged"
    assert "sft.human" in page.content()
    # A Django comment that spans lines reaches the page as text.
    assert "{#" not in page.inner_text("body")


def test_reviewer_judges_with_keyboard_and_signs_off(page, world, bundles):
    submission = judged_human_submission(bundles, vendor=world["vendor"], reference_lab=world["reference_lab"], owner=world["owner"])
    log_in(page, "reviewer", PASSWORD)

    # The portal built the pairs after the verdict: open the set from the staff page, then judge every pair with the S key.
    evaluation_set = EvaluationSet.objects.get(submission=submission)
    page.goto("/staff/evaluation/")
    page.click(f"a[href$='/staff/evaluation/sets/{evaluation_set.pk}/']")
    page.wait_for_url(re.compile(r"/staff/evaluation/sets/\d+/$"))
    # The shortcut keys work once review.js has run, so wait for the page's
    # load event, not only for the form: a key pressed before it is lost.
    with page.expect_navigation():
        page.click("#start-review")
    page.wait_for_selector("#judge-form")
    assert "Acme" not in page.inner_text("main")

    # Same, not Good: which side shows the vendor is random per pair, so a G
    # could count as Bad for the vendor and fail the GSB bound.
    press(page, "s")
    assert page.get_attribute("#progress", "value") == "1"

    # Leave and come back: the page resumes at the first pair not yet judged.
    page.goto(f"/staff/evaluation/sets/{evaluation_set.pk}/review/")
    assert page.url.endswith("/review/")
    assert page.get_attribute("#progress", "value") == "1"
    assert page.get_attribute("#judge-form", "action").endswith("/pairs/4/judge/")
    press(page, "ArrowLeft")
    assert page.url.endswith("?position=3")
    assert page.is_visible("#current-judgement")
    press(page, "ArrowRight")
    assert page.url.endswith("?position=4")
    press(page, "s")
    press(page, "s")
    assert re.search(r"/staff/evaluation/sets/\d+/$", page.url)
    assert page.inner_text("#unjudged") == "0"

    # Sign off with a wrong password first, then the right one.
    page.fill("#sign-off-form textarea[name=statement]", "已核对全部 6 对样本。")
    page.fill("#sign-off-form input[name=password]", "wrong-password")
    submit_and_wait(page, "#sign-off-form button[type=submit]")
    assert "password_invalid" in page.content()
    assert SignOff.objects.count() == 0
    page.fill("#sign-off-form textarea[name=statement]", "已核对全部 6 对样本。")
    page.fill("#sign-off-form input[name=password]", PASSWORD)
    submit_and_wait(page, "#sign-off-form button[type=submit]")
    assert SignOff.objects.get().signer_name == "Li Wei"
    assert "已核对全部 6 对样本。" in page.content()

    # Issue the certificate from the submission page.
    page.goto(f"/submissions/{submission.pk}/")
    page.select_option("select[name=track]", "finetuning")
    page.select_option("select[name=level]", "1")
    page.click(f"form[action$='/submissions/{submission.pk}/issue/'] button[type=submit]")
    page.wait_for_url(re.compile(r"/certificates/PPLM-"))
    certificate = Certificate.objects.get()
    assert certificate.number in page.content()
    assert "sft.human" in page.inner_text("#key-figures")


def test_public_listing_and_verification_in_both_languages(page, world, bundles):
    submission = judged_human_submission(bundles, vendor=world["vendor"], reference_lab=world["reference_lab"], owner=world["owner"])
    evaluation_set = build_sets(submission, actor=world["staff"])[0]
    from portal.certificates.services import issue_certificate
    from portal.evaluation.services import record_judgement, sign_off

    for pair in evaluation_set.pairs.filter(identical=False):
        record_judgement(pair, world["staff"], "same")
    sign_off(evaluation_set, signer=world["staff"], password=PASSWORD, statement="ok")
    certificate = issue_certificate(submission=submission, track="finetuning", level=1, issued_by=world["staff"])

    page.goto("/")
    assert "认证的加速卡" in page.inner_text("h1") or "加速卡" in page.inner_text("h1")
    assert certificate.number in page.inner_text("#listing")
    page.fill("#filters input[name=q]", "no-such-card")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    assert certificate.number not in page.inner_text("#listing")

    page.goto("/certificates/verify/")
    page.fill("input[name=number]", certificate.number)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(certificate.number))
    assert page.get_attribute("#status", "class") == "valid"

    switch_language(page, "en")
    assert "This certificate is valid." in page.inner_text("#status")
    page.goto("/")
    assert "Certified cards" in page.inner_text("h1")

    # Revocation by staff shows at once on the verification page.
    log_in(page, "reviewer", PASSWORD)
    page.goto(f"/certificates/{certificate.number}/")
    page.fill("#revoke-form input[name=reason]", "peak TFLOPS misreported")
    with page.expect_navigation():
        page.click("#revoke-form button[type=submit]")
    assert "peak TFLOPS misreported" in page.inner_text("#status")
    page.goto("/certificates/revoked/")
    assert certificate.number in page.inner_text("#revoked")
