"""Vendor pages for cards and keys, card approval by staff administrators, references, the queue and the audit log."""

import pytest
from django.urls import reverse

from portal.audit.models import AuditEntry
from portal.registry.models import Card, SigningKey
from portal.submissions.models import ReferenceBundle

from .conftest import build_bundle, login, upload_file
from .helpers_verdict import judged_submission, verdict

CARD_FORM = {
    "vendor": "acme", "model": "X300", "serial": "sn-9", "memory_gib": 64, "interconnect": "8 cards, 400 GB/s",
    "peak_source": "X300 datasheet v2, page 4", "peak_bf16": 256.0, "peak_fp32": 32.0,
}


def test_vendor_registers_a_card_that_waits_for_approval(client, owner, vendor):
    login(client, owner)
    response = client.post(reverse("card-list"), {**CARD_FORM, "vendor": vendor.slug})
    assert response.status_code == 302
    card = Card.objects.get(model="X300")
    assert (card.approved, card.memory_gib, card.peak_tflops) == (False, 64, {"bf16": 256.0, "fp32": 32.0})
    entry = AuditEntry.objects.get(action="card.registered")
    assert (entry.actor_label, entry.remote_addr) == ("owner", "127.0.0.1")


@pytest.mark.parametrize("change, code", [
    ({"peak_bf16": "", "peak_fp32": ""}, "peaks_missing"),
    ({"model": "X100", "serial": "sn-1"}, "card_duplicate"),
])
def test_card_form_errors_carry_codes(client, owner, card, change, code):
    login(client, owner)
    response = client.post(reverse("card-list"), {**CARD_FORM, **change})
    assert response.status_code == 400
    assert code in response.content.decode()


def test_outsider_cannot_register_for_another_vendor(client, outsider, vendor):
    login(client, outsider)
    response = client.post(reverse("card-list"), CARD_FORM)
    assert response.status_code == 400
    assert not Card.objects.filter(model="X300").exists()


def test_administrator_approves_a_card_once_and_it_is_audited(client, administrator, vendor):
    card = Card.objects.create(vendor=vendor, model="X300", serial="sn-9", peak_tflops={"bf16": 256.0}, peak_source="datasheet")
    login(client, administrator)
    assert "X300" in client.get(reverse("staff-cards")).content.decode()
    client.post(reverse("staff-card-approve", args=[card.pk]))
    client.post(reverse("staff-card-approve", args=[card.pk]))
    card.refresh_from_db()
    assert card.approved and card.approved_by == administrator and card.approved_at
    assert AuditEntry.objects.filter(action="card.approved", object_id=str(card.pk)).count() == 1


@pytest.mark.parametrize("language, yes", [("en", "yes"), ("zh-hans", "是")])
def test_card_list_approved_without_time(client, owner, card, language, yes):
    # A card approved outside approve_card (in Django admin, or by an older demo_setup) has no approval time.
    assert card.approved_at is None
    login(client, owner)
    client.cookies["django_language"] = language
    page = client.get(reverse("card-list"), HTTP_ACCEPT_LANGUAGE=language).content.decode()

    assert f"<td>{yes}</td>" in page
    assert "()" not in page


def test_vendor_registers_a_public_key(client, owner, vendor):
    from certification.signing import generate_key

    key = generate_key()
    login(client, owner)
    assert client.post(reverse("key-list"), {"vendor": vendor.slug, "public_key_pem": key.public_pem()}).status_code == 302
    assert SigningKey.objects.get(vendor=vendor).key_id in client.get(reverse("key-list")).content.decode()
    assert AuditEntry.objects.filter(action="signing_key.registered").count() == 1


def _private_key_texts() -> dict[str, str]:
    from certification.signing import generate_key

    from .test_private_key_detection import PRIVATE, body

    pem = generate_key().private_pem().decode("ascii")
    unarmoured = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"
    return {"pkcs8": pem, "without armour": unarmoured, "openssh": openssh,
            "rsa pkcs1 without armour": body(PRIVATE["rsa pkcs1"]), "ec sec1 without armour": body(PRIVATE["ec sec1"])}


@pytest.mark.parametrize("kind", ["pkcs8", "without armour", "openssh", "rsa pkcs1 without armour", "ec sec1 without armour"])
@pytest.mark.parametrize("language, words", [
    ("en", ["PRIVATE key", "must not be shared", ".pub file"]),
    ("zh-hans", ["私钥", "不得与任何人共享", ".pub 文件"]),
])
def test_pasted_private_key_is_named_and_not_kept(client, owner, vendor, caplog, kind, language, words):
    text = _private_key_texts()[kind]
    secret = next(line for line in text.splitlines() if line and not line.startswith("-----"))[-20:]
    login(client, owner)
    client.cookies["django_language"] = language
    caplog.set_level("DEBUG")
    response = client.post(reverse("key-list"), {"vendor": vendor.slug, "public_key_pem": text}, HTTP_ACCEPT_LANGUAGE=language)
    page = response.content.decode()

    assert response.status_code == 400
    assert "[private_key_pasted]" in page
    for expected in words:
        assert expected in page
    assert secret not in page
    assert secret not in caplog.text
    assert SigningKey.objects.count() == 0
    assert not AuditEntry.objects.filter(action="signing_key.registered").exists()


def test_invalid_public_key_is_refused(client, owner, vendor):
    login(client, owner)
    response = client.post(reverse("key-list"), {"vendor": vendor.slug, "public_key_pem": "-----BEGIN PUBLIC KEY-----\nnope\n"})
    assert response.status_code == 400
    assert "public_key_invalid" in response.content.decode()
    assert SigningKey.objects.count() == 0


def test_administrator_uploads_a_reference(client, administrator, rule_pack, lab_key, tmp_path):
    path = build_bundle(tmp_path, lab_key, name="reference.tar", vendor="reference-lab", model="CPU", serial="ref-0")
    login(client, administrator)
    form = {"rule_pack": rule_pack.pk, "bundle": upload_file(path.read_bytes()), "peak_fp32": 1.5}
    assert client.post(reverse("reference-list"), form).status_code == 302
    reference = ReferenceBundle.objects.get()
    assert (reference.rule_pack, reference.peak_tflops) == (rule_pack, {"fp32": 1.5})
    assert AuditEntry.objects.get(action="reference.added").actor_label == "administrator"


@pytest.mark.parametrize("data, code", [
    (b"not a tar archive", "bundle_not_archive"),
    (None, "reference_key_unknown"),
])
def test_wrong_reference_file_is_refused(client, administrator, rule_pack, vendor_key, reference_lab, tmp_path, data, code):
    payload = data or build_bundle(tmp_path, vendor_key).read_bytes()
    login(client, administrator)
    response = client.post(reverse("reference-list"), {"rule_pack": rule_pack.pk, "bundle": upload_file(payload), "peak_fp32": 1.0})
    assert response.status_code == 400
    assert code in response.content.decode()
    assert ReferenceBundle.objects.count() == 0


def _tampered_lab_bundle(tmp_path, lab_key) -> bytes:
    payload = build_bundle(tmp_path, lab_key, vendor="reference-lab", model="CPU", serial="ref-0").read_bytes()
    assert payload.count(b'"status": "completed"') == 1
    return payload.replace(b'"status": "completed"', b'"status": "completeD"')


@pytest.mark.parametrize("signer, language, code, words", [
    ("vendor", "en", "reference_key_unknown", ["not signed by a registered reference lab key", "--key LAB.key", "Signing keys"]),
    ("vendor", "zh-hans", "reference_key_unknown", ["不是由已登记的参考实验室密钥签名", "--key LAB.key", "签名密钥"]),
    ("tampered", "en", "reference_tampered", ["changed after the reference lab signed it", "file_digest_mismatch"]),
    ("tampered", "zh-hans", "reference_tampered", ["参考实验室签名之后被改动过", "file_digest_mismatch"]),
])
def test_reference_refusal_says_what_is_wrong(client, administrator, rule_pack, vendor_key, lab_key, tmp_path, signer, language, code, words):
    if signer == "vendor":
        payload = build_bundle(tmp_path, vendor_key).read_bytes()
    else:
        payload = _tampered_lab_bundle(tmp_path, lab_key)
    login(client, administrator)
    client.cookies["django_language"] = language
    response = client.post(reverse("reference-list"), {"rule_pack": rule_pack.pk, "bundle": upload_file(payload), "peak_fp32": 1.0},
                           HTTP_ACCEPT_LANGUAGE=language)
    page = response.content.decode()

    assert response.status_code == 400
    assert f"[{code}]" in page
    assert "must replace" not in page
    for expected in words:
        assert expected in page
    assert ReferenceBundle.objects.count() == 0


def test_queue_filters_by_state_vendor_and_search(client, staff, vendor, other_vendor, card, rule_pack):
    judged = judged_submission(vendor, card, rule_pack, verdict(), label="one")
    login(client, staff)
    link = reverse("submission-detail", args=[judged.pk])
    assert link in client.get(reverse("staff-queue"), {"state": "judged", "vendor": "acme"}).content.decode()
    assert link not in client.get(reverse("staff-queue"), {"state": "rejected"}).content.decode()
    assert link in client.get(reverse("staff-queue"), {"q": judged.sha256[:10]}).content.decode()
    assert link not in client.get(reverse("staff-queue"), {"vendor": "globex"}).content.decode()


def test_audit_log_search(client, staff, administrator, vendor):
    card = Card.objects.create(vendor=vendor, model="Z9", serial="zz", peak_tflops={"fp32": 1.0})
    from portal.registry.services import approve_card

    approve_card(card.pk, actor=administrator, remote_addr="10.1.2.3")
    login(client, staff)
    found = client.get(reverse("audit-log"), {"q": "approved 10.1.2"}).content.decode()
    row = "<code>card.approved</code>"
    assert row in found and "10.1.2.3" in found
    assert row not in client.get(reverse("audit-log"), {"q": "no-such-thing"}).content.decode()
    assert row in client.get(reverse("audit-log"), {"action": "card.approved"}).content.decode()


def test_dates_are_shown_in_shanghai_time(client, staff, vendor, card, rule_pack):
    judged = judged_submission(vendor, card, rule_pack, verdict())
    login(client, staff)
    page = client.get(reverse("staff-queue")).content.decode()
    from zoneinfo import ZoneInfo

    assert judged.created_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M CST") in page


def test_pages_switch_to_english(client, owner):
    login(client, owner)
    assert "登记加速卡" in client.get(reverse("card-list")).content.decode()
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert "Register a card" in client.get(reverse("card-list")).content.decode()
