"""Listing page errors and compromised credential keys, in a real browser."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from portal.certificates.credentials import rotate_credential_key, shown_time
from portal.certificates.models import CredentialKey
from tests.portal.helpers_gsb import judged_human_submission

from .conftest import log_in, switch_language
from .test_certification_flow import PASSWORD, bundles, world  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
LEAK_REASON = "private key copied to a lost laptop"


def issued_certificate(world, bundles):
    """Judge the real bundles, review every pair, sign off and issue a finetuning certificate."""
    from portal.certificates.services import issue_certificate
    from portal.evaluation.services import build_sets, record_judgement, sign_off

    submission = judged_human_submission(bundles, vendor=world["vendor"], reference_lab=world["reference_lab"], owner=world["owner"])
    evaluation_set = build_sets(submission, actor=world["staff"])[0]
    for pair in evaluation_set.pairs.filter(identical=False):
        record_judgement(pair, world["staff"], "same")
    sign_off(evaluation_set, signer=world["staff"], password=PASSWORD, statement="ok")
    return issue_certificate(submission=submission, track="finetuning", level=1, issued_by=world["staff"])


def listing_alert(page, query: str) -> tuple[int, str]:
    """Open the listing with `query` and return the HTTP status and the text of its error message."""
    response = page.goto(f"/?{query}")
    return response.status, page.inner_text("main p.error[role=alert]")


@pytest.mark.parametrize("value, status, chinese, english", [
    ("999", 404, "不存在", "does not exist"),
    ("abc", 400, "无效", "is invalid"),
], ids=["past-last-page", "invalid-page"])
def test_listing_page_error_message(page, world, bundles, value, status, chinese, english):
    certificate = issued_certificate(world, bundles)

    shown_status, alert = listing_alert(page, f"page={value}")
    assert shown_status == status
    assert alert.startswith(f"页码 '{value}' ")
    assert chinese in alert
    assert alert.endswith("现在显示第 1 页。")
    assert certificate.number in page.inner_text("#listing")

    switch_language(page, "en")
    shown_status, alert = listing_alert(page, f"page={value}")
    assert shown_status == status
    assert alert.startswith(f"The page '{value}' ")
    assert english in alert
    assert alert.endswith("Page 1 is shown instead.")
    assert certificate.number in page.inner_text("#listing")


def test_listing_names_unlisted_vendor(page, world, bundles):
    certificate = issued_certificate(world, bundles)

    status, alert = listing_alert(page, "vendor=acme2")
    assert status == 400
    assert alert == "没有证书与筛选条件 vendor='acme2' 匹配，该条件已忽略。请使用以下取值之一：acme，或去掉 vendor 以列出全部证书。"
    assert certificate.number in page.inner_text("#listing")

    switch_language(page, "en")
    status, alert = listing_alert(page, "vendor=acme2")
    assert status == 400
    assert alert == "No certificate matches the filter vendor='acme2', so it was ignored. Use one of: acme, or leave vendor out to list every certificate."
    assert certificate.number in page.inner_text("#listing")


def verify_pasted(page, credential: dict) -> int:
    """Paste a credential into the verification page, submit it and return the HTTP status."""
    page.goto("/certificates/credential/verify/")
    page.fill("textarea[name=credential]", json.dumps(credential))
    with page.expect_navigation() as navigation:
        page.click("main form button[type=submit]")
    return navigation.value.status


def test_compromised_key_credential_rejected(page, world, bundles, settings, tmp_path):
    # Rotate a key of this test only, never the portal key that other tests sign with.
    settings.PORTAL_CREDENTIAL_KEY_PATH = tmp_path / "keys" / "portal.key"
    certificate = issued_certificate(world, bundles)
    old_credential = certificate.credential
    assert verify_pasted(page, old_credential) == 200
    assert page.get_attribute("#credential-result", "class") == "valid"

    rotation = rotate_credential_key()
    call_command("mark_credential_key_compromised", rotation.old_key_id, "--reason", LEAK_REASON, "--staff-user", "reviewer")
    compromised_on = shown_time(CredentialKey.objects.get(key_id=rotation.old_key_id).compromised_at)

    assert verify_pasted(page, old_credential) == 400
    result = page.inner_text("#credential-result")
    assert page.get_attribute("#credential-result", "class") == "error"
    assert f"该凭证由密钥 {rotation.old_key_id} 签名，该密钥已于 {compromised_on} 被标记为泄露（{LEAK_REASON}）。" in result
    assert "不可信" in result
    assert result.endswith("[key_compromised]")
    assert "已泄露的密钥" in page.inner_text("#credential-key")

    switch_language(page, "en")
    assert verify_pasted(page, old_credential) == 400
    result = page.inner_text("#credential-result")
    assert f"The credential is signed by key {rotation.old_key_id}, which was marked compromised on {compromised_on} ({LEAK_REASON})." in result
    assert "so it is not trustworthy" in result
    assert "a compromised key" in page.inner_text("#credential-key")

    # The certificate page offers the credential signed again by the current key, and that one verifies.
    resigned = json.loads(page.request.get(f"/certificates/{certificate.number}/credential.json").text())
    assert verify_pasted(page, resigned) == 200
    assert page.get_attribute("#credential-result", "class") == "valid"
    assert certificate.number in page.inner_text("#credential-result")
    keys = {key["key_id"]: key["status"] for key in json.loads(page.request.get("/certificates/credential/keys.json").text())["keys"]}
    assert keys[rotation.old_key_id] == "compromised"
    assert keys[rotation.new_key_id] == "current"
