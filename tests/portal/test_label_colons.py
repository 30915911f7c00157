"""Labels on Chinese pages end with the full-width colon, English ones with ': '."""

import pytest
from django.urls import reverse

from portal.certificates.services import revoke_certificate

from .conftest import login
from .helpers_verdict import judged_submission, verdict


@pytest.mark.parametrize("language, expected, unexpected", [
    ("zh-hans", ["规则包：", "参考：", "预训练：I"], ["规则包:", "参考:", "预训练: "]),
    ("en", ["Rule pack: ", "Reference: ", "pretraining: I"], ["Rule pack：", "Reference："]),
])
def test_submission_page_label_colons(client, owner, vendor, card, rule_pack, language, expected, unexpected):
    submission = judged_submission(vendor, card, rule_pack, verdict())
    client.cookies["django_language"] = language

    page = login(client, owner).get(reverse("submission-detail", args=[submission.pk])).content.decode()

    for text in expected:
        assert text in page
    for text in unexpected:
        assert text not in page


@pytest.mark.parametrize("language, expected", [("zh-hans", "原因：<span"), ("en", "Reason: <span")])
def test_revoked_certificate_reason_colon(client, certificate, staff, language, expected):
    revoke_certificate(certificate, reason="key leaked", revoked_by=staff)
    client.cookies["django_language"] = language

    page = client.get(reverse("certificate-detail", args=[certificate.number])).content.decode()

    assert expected in page
