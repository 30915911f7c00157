"""Run tickets on the portal: issuing, the one-time check in the pipeline, and the vendor pages."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone, translation

from certification.bundle import write_bundle
from certification.rulepack import parse_rule_pack
from certification.signing import generate_key
from certification.tickets import new_claims, sign_ticket, verify_ticket
from portal.audit.models import AuditEntry
from portal.registry.models import Card
from portal.submissions import pipeline
from portal.submissions.models import RulePack, Submission
from portal.submissions.services import add_reference
from portal.tickets.errors import TicketRequestError
from portal.tickets.keys import ticket_key, ticket_keyring
from portal.tickets.models import RunTicket
from portal.tickets.services import issue_ticket
from tests.certification.runfolder import build_run

from .conftest import login


@pytest.fixture(autouse=True)
def ticket_key_in_tmp(settings, tmp_path):
    settings.PORTAL_TICKET_KEY_PATH = tmp_path / "keys" / "ticket.key"


@pytest.fixture
def ticket(vendor, card, rule_pack, owner):
    return issue_ticket(vendor=vendor, card=card, track="pretraining", level=1, rule_pack=rule_pack, actor=owner)


@pytest.fixture
def reference(tmp_path, rule_pack, lab_key):
    """A reference run of the demo pack by the reference lab, so that the real verdict engine can judge."""
    path = write_bundle(build_run(tmp_path / "reference"), tmp_path / "reference.tar", lab_key).path
    return add_reference(path, rule_pack=rule_pack, peak_tflops={"fp32": 2.0})[0]


def ticketed_bundle(tmp_path, key, envelope, *, name="run", pack=None, serial="sn-1"):
    """Pack a complete run of `pack` by acme's card, started now, that carries `envelope` in run.json."""
    run_dir = build_run(tmp_path / name, **({"pack": pack} if pack else {}))
    run = json.loads((run_dir / "run.json").read_text())
    now = timezone.now().replace(microsecond=0).isoformat()
    run.update(vendor="acme", card={"model": "X100", "serial": serial}, ticket=envelope, started_at=now, finished_at=now)
    (run_dir / "run.json").write_text(json.dumps(run))
    return write_bundle(run_dir, tmp_path / f"{name}.tar", key).path


def validate(vendor, path, received_at=None):
    submission = Submission(vendor=vendor, sha256=path.name.ljust(64, "0")[:64], size=path.stat().st_size)
    submission.bundle.save(path.name, ContentFile(path.read_bytes()), save=False)
    submission.save()
    if received_at is not None:
        Submission.objects.filter(pk=submission.pk).update(created_at=received_at)
    pipeline.validate_submission(submission.pk)
    submission.refresh_from_db()
    return submission


def error_code(submission):
    return submission.report.error_code


def test_issued_ticket_is_signed_by_the_portal(ticket, card):
    claims = verify_ticket(ticket.envelope, ticket_keyring()).claims

    assert claims["card"] == {"model": card.model, "serial": card.serial}
    assert claims["nonce"] == ticket.nonce
    assert ticket.expires_at - ticket.issued_at == timedelta(days=14)
    assert AuditEntry.objects.filter(action="run_ticket.issued", object_id=str(ticket.pk)).exists()


def test_issue_refuses_unapproved_card(vendor, rule_pack):
    card = Card.objects.create(vendor=vendor, model="X200", serial="sn-9", peak_tflops={"fp32": 1}, approved=False)

    with pytest.raises(TicketRequestError) as caught:
        issue_ticket(vendor=vendor, card=card, track="pretraining", level=1, rule_pack=rule_pack)
    assert caught.value.code == "ticket_card_not_approved"


def test_issue_refuses_card_of_another_vendor(other_vendor, card, rule_pack):
    with pytest.raises(TicketRequestError) as caught:
        issue_ticket(vendor=other_vendor, card=card, track="pretraining", level=1, rule_pack=rule_pack)
    assert caught.value.code == "ticket_card_unknown"


def test_issue_refuses_level_the_pack_lacks(vendor, card, rule_pack):
    with pytest.raises(TicketRequestError) as caught:
        issue_ticket(vendor=vendor, card=card, track="pretraining", level=3, rule_pack=rule_pack)
    assert caught.value.code == "ticket_scope_unknown"


def test_bundle_with_ticket_is_judged_and_uses_it(tmp_path, vendor, vendor_key, ticket, reference):
    submission = validate(vendor, ticketed_bundle(tmp_path, vendor_key, ticket.envelope))

    assert submission.state == "judged", submission.report.error_code
    ticket.refresh_from_db()
    assert ticket.used_by == submission
    assert AuditEntry.objects.filter(action="run_ticket.used", object_id=str(ticket.pk)).exists()


def test_ticket_is_accepted_once(tmp_path, vendor, vendor_key, ticket, reference):
    first = validate(vendor, ticketed_bundle(tmp_path, vendor_key, ticket.envelope, name="first"))
    second = validate(vendor, ticketed_bundle(tmp_path, vendor_key, ticket.envelope, name="second"))

    assert first.state == "judged"
    assert error_code(second) == "ticket_reused"


def test_ticket_for_another_card_is_refused(tmp_path, vendor, card, vendor_key, rule_pack, reference):
    other_card = Card.objects.create(vendor=vendor, model="X100", serial="sn-2", peak_tflops={"fp32": 2.0}, approved=True)
    ticket = issue_ticket(vendor=vendor, card=other_card, track="pretraining", level=1, rule_pack=rule_pack)

    submission = validate(vendor, ticketed_bundle(tmp_path, vendor_key, ticket.envelope, serial="sn-1"))

    assert error_code(submission) == "ticket_card_mismatch"
    ticket.refresh_from_db()
    assert ticket.used_by is None


def test_stale_ticket_is_refused(tmp_path, vendor, vendor_key, ticket, reference):
    path = ticketed_bundle(tmp_path, vendor_key, ticket.envelope)

    submission = validate(vendor, path, received_at=ticket.expires_at + timedelta(seconds=1))

    assert error_code(submission) == "ticket_expired"


def test_ticket_not_signed_by_the_portal_is_refused(tmp_path, vendor, vendor_key, ticket, reference):
    forged = sign_ticket(json.loads(json.dumps(verify_ticket(ticket.envelope, ticket_keyring()).claims)), generate_key())

    submission = validate(vendor, ticketed_bundle(tmp_path, vendor_key, forged))

    assert error_code(submission) == "ticket_signature_invalid"


def test_ticket_the_portal_never_stored_is_refused(tmp_path, vendor, card, vendor_key, rule_pack, reference):
    claims = new_claims(vendor="acme", card_model="X100", card_serial="sn-1", track="pretraining", level=1,
                        rule_pack={"name": rule_pack.name, "sha256": rule_pack.sha256},
                        issued_at=timezone.now().replace(microsecond=0) - timedelta(hours=1), lifetime=timedelta(days=1))

    submission = validate(vendor, ticketed_bundle(tmp_path, vendor_key, sign_ticket(claims, ticket_key())))

    assert error_code(submission) == "ticket_unknown"


def test_pack_that_requires_tickets_refuses_bundle_without(tmp_path, vendor, card, vendor_key, rule_pack):
    text = rule_pack.text.replace("version: \"2026.1\"", "version: \"2026.99\"", 1).replace("settings:\n", "settings:\n  tickets_required: true\n", 1)
    parsed = parse_rule_pack(text.encode("utf-8"))
    RulePack.objects.create(name=parsed.name, sha256=parsed.sha256, text=text, reference_kind=parsed.reference_kind)

    submission = validate(vendor, ticketed_bundle(tmp_path, vendor_key, None, pack=parsed))

    assert error_code(submission) == "ticket_missing"


def test_owner_requests_and_downloads_a_ticket(client, owner, card, rule_pack):
    login(client, owner)

    response = client.post(reverse("ticket-list"), {"card": card.pk, "rule_pack": rule_pack.pk, "scope": "pretraining:1"})

    assert response.status_code == 302
    ticket = RunTicket.objects.get()
    download = client.get(reverse("ticket-download", args=[ticket.ticket_id]))
    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    assert verify_ticket(json.loads(download.content), ticket_keyring()).ticket_id == ticket.ticket_id
    assert ticket.ticket_id[:8] in client.get(reverse("ticket-list")).content.decode()


@pytest.mark.parametrize("language, choice, row", [
    ("zh-hans", '<option value="finetuning:1">调优 I</option>', "<td>预训练 I</td>"),
    ("en", '<option value="finetuning:1">Fine-tuning I</option>', "<td>Pretraining I</td>"),
])
def test_ticket_page_names_tracks_and_levels(client, owner, card, rule_pack, language, choice, row):
    login(client, owner)
    client.post(reverse("ticket-list"), {"card": card.pk, "rule_pack": rule_pack.pk, "scope": "pretraining:1"})
    client.cookies["django_language"] = language
    page = client.get(reverse("ticket-list"), HTTP_ACCEPT_LANGUAGE=language).content.decode()

    assert choice in page
    assert row in page
    assert ">finetuning 1<" not in page
    assert "赛道" not in page


@pytest.mark.parametrize("language, words", [
    ("zh-hans", ["认证方向 预训练 没有等级 III"]),
    ("en", ["no level III in the track pretraining"]),
])
def test_scope_refusal_names_track(vendor, card, rule_pack, language, words):
    with translation.override(language), pytest.raises(TicketRequestError) as caught:
        issue_ticket(vendor=vendor, card=card, track="pretraining", level=3, rule_pack=rule_pack)
    with translation.override(language):
        detail = caught.value.detail

    for expected in words:
        assert expected in detail
    assert "赛道" not in detail


def test_outsider_cannot_download(client, outsider, ticket):
    login(client, outsider)

    assert client.get(reverse("ticket-download", args=[ticket.ticket_id])).status_code == 404


def test_anonymous_is_sent_to_login(client, ticket):
    response = client.get(reverse("ticket-list"))

    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_outsider_cannot_request_for_another_vendors_card(client, outsider, card, rule_pack):
    login(client, outsider)

    response = client.post(reverse("ticket-list"), {"card": card.pk, "rule_pack": rule_pack.pk, "scope": "pretraining:1"})

    assert response.status_code == 400
    assert not RunTicket.objects.exists()
