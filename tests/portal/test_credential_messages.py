"""The reasons the credential verification page and API give, in the request's language, with technical details apart."""

import base64
import json
import re

import pytest
from django.urls import reverse

from certification.credentials import sign_credential
from certification.signing import generate_key
from portal.certificates.views import CREDENTIAL_MAX_BYTES


@pytest.fixture(autouse=True)
def key_in_tmp(settings, tmp_path):
    settings.PORTAL_CREDENTIAL_KEY_PATH = tmp_path / "keys" / "portal.key"


def post_body(client, body: bytes):
    return client.post(reverse("credential-verify"), data=body, content_type="application/json")


def tampered(certificate) -> bytes:
    envelope = dict(certificate.credential)
    claims = json.loads(base64.b64decode(envelope["payload"]))
    claims["level"] = 3
    envelope["payload"] = base64.b64encode(json.dumps(claims).encode()).decode()
    return json.dumps(envelope).encode()


def english_words(text: str) -> list[str]:
    """Return the words of Latin letters in `text` other than the format names JSON, DSSE and UTF."""
    return [word for word in re.findall(r"[A-Za-z]{3,}", text) if word not in ("JSON", "DSSE", "UTF")]


def test_bad_signature_reason_in_chinese(client, certificate):
    body = post_body(client, tampered(certificate)).json()
    assert body["code"] == "signature_invalid"
    assert body["detail"] == "无法验证该凭证：凭证的任何签名都无法用门户的密钥验证。请提交从证书页面下载的 JSON 文件。"
    assert "technical_detail" not in body


def test_bad_signature_reason_in_english(client, certificate):
    client.cookies["django_language"] = "en"
    body = post_body(client, tampered(certificate)).json()
    assert body["detail"] == (
        "The credential could not be verified: no signature of it verifies with the portal's keys. "
        "Upload the JSON file downloaded from the certificate page."
    )


def test_not_json_keeps_parser_position_apart(client, db):
    body = post_body(client, b"not json").json()
    assert body["code"] == "credential_invalid"
    assert body["detail"] == "无法验证该凭证：内容不是 JSON。请提交从证书页面下载的 JSON 文件。"
    assert body["technical_detail"] == "Expecting value: line 1 column 1 (char 0)"


@pytest.mark.parametrize("raw, code, reason", [
    (b"\xff\xfe", "credential_invalid", "内容不是 UTF-8 文本"),
    (b'{"payload": 1}', "credential_invalid", "内容不是 DSSE 信封"),
    (json.dumps({"payload": "e30=", "payloadType": "text/plain", "signatures": []}).encode(), "credential_invalid", "载荷类型 &#x27;text/plain&#x27; 不是证书凭证的类型"),
    (b" " * (CREDENTIAL_MAX_BYTES + 1), "credential_too_large", f"大小超过 {CREDENTIAL_MAX_BYTES} 字节"),
])
def test_unreadable_credential_reasons(client, db, raw, code, reason):
    response = post_body(client, raw)
    body = response.json()
    assert response.status_code == 400
    assert body["code"] == code
    assert reason.replace("&#x27;", "'") in body["detail"]
    assert english_words(body["detail"].replace("text/plain", "")) == []


def test_unknown_key_reason_names_key(client, certificate):
    other = generate_key()
    envelope = sign_credential(json.loads(base64.b64decode(certificate.credential["payload"])), other)
    body = post_body(client, json.dumps(envelope).encode()).json()
    assert body["code"] == "key_unknown"
    assert other.key_id in body["detail"]
    assert "不在门户当前及已停用的凭证密钥之中" in body["detail"]


def test_form_page_shows_reason_and_technical_detail(client, db):
    page = client.post(reverse("credential-verify"), {"credential": "{oops"}).content.decode()
    assert "无法验证该凭证：内容不是 JSON。" in page
    assert 'id="credential-technical-detail"' in page
    assert "Expecting property name enclosed in double quotes" in page
