"""Rejection messages: every code has a portal sentence in Chinese and English, on the page and in the API."""

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django.urls import reverse
from django.utils import translation

from certification.bundle import open_bundle
from certification.criteria import RecordsInvalid
from certification.errors import BUNDLE_ERRORS, TICKET_ERRORS, BundleError, TicketError
from certification.tickets import PAYLOAD_TYPE, parse_ticket
from portal.submissions.models import Submission, ValidationReport
from portal.submissions.pipeline import Rejection, _finish_rejected
from portal.submissions.rejections import PLACEHOLDER, REJECTION_MESSAGES
from tests.certification.test_bundle import KEYRING, signed_members, write_canonical

from .conftest import login, upload_file

PIPELINE_CODES = {"records_invalid", "validation_timed_out"}
BUNDLE_BYTES = b"stored bundle bytes"


def rejected_with(vendor, rejection: Rejection) -> Submission:
    with transaction.atomic():
        submission = Submission(vendor=vendor, sha256=hashlib.sha256(BUNDLE_BYTES).hexdigest(), size=len(BUNDLE_BYTES), state=Submission.State.VALIDATING)
        submission.bundle.save("bundle.tar", ContentFile(BUNDLE_BYTES), save=False)
        submission.save()
    return _finish_rejected(submission.pk, rejection)


def test_every_code_has_a_sentence():
    assert set(BUNDLE_ERRORS) | set(TICKET_ERRORS) | PIPELINE_CODES == set(REJECTION_MESSAGES)


@pytest.mark.parametrize("code", sorted(REJECTION_MESSAGES))
def test_sentence_translated_and_names_value(code):
    report = ValidationReport(error_code=code, error_params={"value": "VALUE-42"}, error_message="core text")
    with translation.override("en"):
        english = report.error_detail
    with translation.override("zh-hans"):
        chinese = report.error_detail
    assert english != chinese, code
    assert "core text" not in english
    sentences = REJECTION_MESSAGES[code] if isinstance(REJECTION_MESSAGES[code], tuple) else (REJECTION_MESSAGES[code],)
    uses_value = "%(value)s" in str(sentences[-1])  # the value-only sentence, which a report with only a value gets
    assert ("VALUE-42" in english) == uses_value
    assert ("VALUE-42" in chinese) == uses_value


@pytest.mark.parametrize("code", sorted(REJECTION_MESSAGES))
def test_last_sentence_needs_only_value(code):
    # A report stored before the core recorded an error's details has only its value, and gets the last sentence.
    sentences = REJECTION_MESSAGES[code] if isinstance(REJECTION_MESSAGES[code], tuple) else (REJECTION_MESSAGES[code],)

    assert set(PLACEHOLDER.findall(str(sentences[-1]))) <= {"value", "pack_again"}


def test_stored_json_error_without_position():
    report = ValidationReport(error_code="json_invalid", error_params={"value": "workloads/a/steps.jsonl line 3"},
                              error_message="core text")

    with translation.override("en"):
        english = report.error_detail
    with translation.override("zh-hans"):
        chinese = report.error_detail

    assert english.startswith("The bundle contains invalid JSON in workloads/a/steps.jsonl line 3. ")
    assert chinese.startswith("结果包中的 workloads/a/steps.jsonl line 3 含有无效的 JSON。")


@pytest.mark.parametrize("error, english, chinese", [
    (BundleError("signature_key_unknown", "ed25519:abc123"), "not a signing key of your vendor", "不是贵厂商的签名密钥"),
    (BundleError("file_digest_mismatch", "workloads/a/steps.jsonl"), "The file was changed after packing", "重新打包"),
    (TicketError("ticket_expired", "2026-01-01T00:00:00+00:00"), "Request a new ticket", "申请新票据"),
])
def test_page_shows_the_language(client, owner, vendor, error, english, chinese):
    submission = rejected_with(vendor, Rejection.from_bundle_error(error))
    assert submission.report.error_params == {"value": str(error.value)}
    login(client, owner)
    url = reverse("submission-detail", args=[submission.pk])

    client.cookies["django_language"] = "en"
    page = client.get(url).content.decode()
    assert english in page
    assert str(error.value) in page
    assert error.hint not in page  # the command-line hint of the core is not shown when the portal has a sentence

    client.cookies["django_language"] = "zh-hans"
    page = client.get(url).content.decode()
    assert chinese in page
    assert str(error.value) in page


# signature_key_unknown is left out: the same bytes again validate that submission again (see test_upload_again).
@pytest.mark.parametrize("error, english, chinese", [
    (BundleError("signature_key_revoked", "2026-01-01T00:00:00+00:00"), "after its signing key was revoked", "晚于其签名密钥被吊销的时间"),
    (BundleError("file_digest_mismatch", "workloads/a/steps.jsonl"), "The file was changed after packing", "重新打包"),
    (TicketError("ticket_expired", "2026-01-01T00:00:00+00:00"), "Request a new ticket", "申请新票据"),
])
def test_upload_again_shows_rejection_language(owner_api, vendor, error, english, chinese):
    rejected_with(vendor, Rejection.from_bundle_error(error))

    for language, expected in (("en", english), ("zh-hans", chinese)):
        # The same bytes again return the stored submission with its report.
        reply = owner_api.post(reverse("api-bundle-upload"), {"bundle": upload_file(BUNDLE_BYTES)}, format="multipart", HTTP_ACCEPT_LANGUAGE=language)
        assert reply.status_code == 200
        assert reply.json()["error_code"] == error.code
        assert reply.json()["notice_code"] == "bundle_already_uploaded"
        assert expected in reply.json()["error_detail"]


def test_report_stored_without_value_shows_a_dash(vendor):
    report = ValidationReport(error_code="ticket_reused", error_params={})
    with translation.override("en"):
        assert "The run ticket - was already used" in report.error_detail


def test_unknown_code_keeps_the_stored_text_and_hint(client, owner, vendor):
    submission = rejected_with(vendor, Rejection("some_future_code", message="stored English text", hint="stored hint"))
    login(client, owner)
    page = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()
    assert "stored English text" in page
    assert "stored hint" in page


def test_json_error_keeps_position(vendor):
    error = BundleError("json_invalid", "workloads/a/steps.jsonl", line=3, column=7, problem="Expecting value")

    submission = rejected_with(vendor, Rejection.from_bundle_error(error))

    report = submission.report
    assert report.error_params == {"value": "workloads/a/steps.jsonl", "line": "3", "column": "7", "problem": "Expecting value"}
    with translation.override("en"):
        assert "invalid JSON in workloads/a/steps.jsonl at line 3, column 7." in report.error_detail
    with translation.override("zh-hans"):
        assert "workloads/a/steps.jsonl 第 3 行第 7 列的 JSON 无效" in report.error_detail
        assert "Expecting" not in report.error_detail


def test_digest_mismatch_in_chinese(vendor):
    error = BundleError("subject_digest_mismatch", "aaaa / bbbb")

    report = rejected_with(vendor, Rejection.from_bundle_error(error)).report

    with translation.override("zh-hans"):
        assert "（签名中的 sha256 / 实际的 sha256：aaaa / bbbb）" in report.error_detail
        assert "signed" not in report.error_detail


@pytest.mark.parametrize("error, english, chinese", [
    (BundleError("archive_invalid", "truncated header", offset=1536, problem="truncated header"),
     "not a valid uncompressed tar archive: reading failed at byte offset 1536.", "在字节偏移 1536 处读取失败"),
    (TicketError("ticket_invalid", "payload", line=1, column=2, problem="Expecting value"),
     "its payload has invalid JSON at line 1, column 2.", "其 payload 第 1 行第 2 列的 JSON 无效"),
    (TicketError("ticket_invalid", "$.signatures", envelope_field="$.signatures"),
     "not a DSSE envelope: $.signatures is missing or invalid.", "不是 DSSE 信封：$.signatures 缺失或无效"),
    (TicketError("ticket_invalid", "text/plain", payload_type="text/plain", expected=PAYLOAD_TYPE),
     f"has the payload type text/plain, not {PAYLOAD_TYPE}.", f"载荷类型是 text/plain，而不是 {PAYLOAD_TYPE}"),
    (TicketError("ticket_invalid", "$.nonce", missing_claim="$.nonce"), "has no claim $.nonce.", "缺少声明 $.nonce"),
    (TicketError("ticket_invalid", "$.extra", unexpected_claim="$.extra"), "its schema does not allow: $.extra.", "其模式不允许的声明：$.extra"),
    (TicketError("ticket_invalid", "yesterday", time_claim="$.issued_at"),
     "claim $.issued_at is not an ISO 8601 time with a time zone: yesterday.", "声明 $.issued_at 不是带时区的 ISO 8601 时间：yesterday"),
    (TicketError("ticket_invalid", "$.level", claim="$.level", keyword="minimum", expected=1),
     "claim $.level does not meet the schema keyword minimum: 1.", "声明 $.level 不满足模式关键字 minimum：1"),
    (TicketError("ticket_not_yet_valid", "soon", time_claim="run.started_at"),
     "run.started_at is not an ISO 8601 time with a time zone: soon.", "结果包的 run.started_at 不是带时区的 ISO 8601 时间：soon"),
], ids=["archive_invalid", "ticket_json", "ticket_envelope", "ticket_payload_type", "ticket_claim_missing",
        "ticket_claim_unexpected", "ticket_claim_time", "ticket_claim_schema", "ticket_bundle_time"])
def test_error_details_shown_in_each_language(vendor, error, english, chinese):
    report = rejected_with(vendor, Rejection.from_bundle_error(error)).report

    with translation.override("en"):
        assert english in report.error_detail
    with translation.override("zh-hans"):
        assert chinese in report.error_detail
        assert "truncated" not in report.error_detail
        assert "Expecting" not in report.error_detail


def test_ticket_from_bundle_named_by_claim(vendor):
    with pytest.raises(TicketError) as caught:
        parse_ticket({"payload": "e30=", "payloadType": PAYLOAD_TYPE, "signatures": []})

    report = rejected_with(vendor, Rejection.from_bundle_error(caught.value)).report

    with translation.override("zh-hans"):
        assert "结果包中的运行票据缺少声明 $.ticket_version" in report.error_detail
        assert "required property" not in report.error_detail


def negative_size(manifest):
    manifest["files"][0]["size"] = -1


def extra_key(manifest):
    manifest["extra"] = 1


@pytest.mark.parametrize("edit, english, chinese, left_out", [
    (negative_size, "manifest.json is invalid at files/0/size: it does not meet the schema keyword minimum.",
     "结果包的 manifest.json 在 files/0/size 处无效：不满足模式关键字 minimum。", "less than"),
    (extra_key, "manifest.json is invalid at (top level): it does not meet the schema keyword additionalProperties.",
     "结果包的 manifest.json 在（顶层）处无效：不满足模式关键字 additionalProperties。", "top level"),
], ids=["minimum", "top_level"])
def test_manifest_schema_error_without_english(vendor, tmp_path, edit, english, chinese, left_out):
    path = write_canonical(tmp_path / "bundle.tar", signed_members({"run.json": b"[]"}, manifest_edit=edit))
    with pytest.raises(BundleError) as caught:
        open_bundle(path, KEYRING)

    report = rejected_with(vendor, Rejection.from_bundle_error(caught.value)).report

    with translation.override("en"):
        assert english in report.error_detail
    with translation.override("zh-hans"):
        assert chinese in report.error_detail
        assert left_out not in report.error_detail


@pytest.mark.parametrize("error, english, chinese", [
    (BundleError("manifest_invalid", "Expecting value: line 1 column 12 (char 11)", line=1, column=12, problem="Expecting value"),
     "manifest.json is not valid JSON at line 1, column 12.", "结果包的 manifest.json 第 1 行第 12 列的 JSON 无效。"),
    (BundleError("manifest_invalid", "bare NaN in JSON", token="NaN"),
     "manifest.json contains a bare NaN token, which JSON does not allow.", "结果包的 manifest.json 中有未加引号的 NaN，JSON 不允许这样写。"),
    (BundleError("manifest_invalid", "files/1/path", problem="archive member path contains '..': ../x", path_code="path_parent", path="../x"),
     "manifest.json lists an invalid file path at files/1/path: ../x.", "结果包的 manifest.json 在 files/1/path 处列出了无效的文件路径：../x。"),
], ids=["json", "non_finite", "path"])
def test_manifest_json_and_path_errors_without_english(vendor, error, english, chinese):
    report = rejected_with(vendor, Rejection.from_bundle_error(error)).report

    with translation.override("en"):
        assert english in report.error_detail
    with translation.override("zh-hans"):
        assert chinese in report.error_detail
        assert "Expecting" not in report.error_detail
        assert "archive member" not in report.error_detail


def test_records_invalid_in_chinese(vendor):
    error = RecordsInvalid("workloads/a/steps.jsonl is missing", "缺少 workloads/a/steps.jsonl")
    report = rejected_with(vendor, Rejection.from_records_error(error)).report

    with translation.override("en"):
        assert "incomplete or invalid: workloads/a/steps.jsonl is missing." in report.error_detail
    with translation.override("zh-hans"):
        assert "结果包中的记录不完整或无效：缺少 workloads/a/steps.jsonl。" in report.error_detail
