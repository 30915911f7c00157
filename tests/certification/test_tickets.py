"""Run tickets: signing, reading, and the checks that tie a bundle to its ticket."""

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from certification.bundle import open_bundle, write_bundle
from certification.errors import TicketError
from certification.signing import Keyring, generate_key
from certification.tickets import (
    check_fits,
    check_run_fits,
    encode_ticket_file,
    new_claims,
    parse_ticket,
    read_ticket_file,
    sign_ticket,
    verify_ticket,
)
from tests.certification.runfolder import PACK, build_run

PORTAL_KEY = generate_key()
PORTAL = Keyring([PORTAL_KEY.public_key])
ISSUED = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


def claims(**changes):
    values = dict(vendor="acme", card_model="X100", card_serial="sn-1", track="pretraining", level=1,
                  rule_pack={"name": PACK.name, "sha256": PACK.sha256}, issued_at=ISSUED, lifetime=timedelta(days=14))
    values.update(changes)
    return new_claims(**values)


def manifest(**changes):
    value = {
        "vendor": "acme", "card": {"model": "X100", "serial": "sn-1"},
        "rule_pack": {"name": PACK.name, "sha256": PACK.sha256}, "created_at": "2026-03-02T00:00:00+00:00",
        "run": {"tracks": ["pretraining", "finetuning"], "level": 1, "started_at": "2026-03-01T09:00:00Z"},
    }
    value.update(changes)
    return value


def test_signed_ticket_verifies_and_carries_claims():
    envelope = sign_ticket(claims(), PORTAL_KEY)

    ticket = verify_ticket(envelope, PORTAL)

    assert ticket.claims["card"] == {"model": "X100", "serial": "sn-1"}
    assert len(ticket.claims["nonce"]) == 64
    assert ticket.expires_at == ISSUED + timedelta(days=14)


def test_two_tickets_have_different_ids_and_nonces():
    first, second = claims(), claims()

    assert first["ticket_id"] != second["ticket_id"]
    assert first["nonce"] != second["nonce"]


def test_ticket_of_another_key_is_refused():
    envelope = sign_ticket(claims(), generate_key())

    with pytest.raises(TicketError) as caught:
        verify_ticket(envelope, PORTAL)
    assert caught.value.code == "ticket_signature_invalid"


def test_edited_ticket_is_refused():
    envelope = sign_ticket(claims(), PORTAL_KEY)
    forged = claims(card_serial="sn-2")
    forged_payload = json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()
    envelope["payload"] = base64.b64encode(forged_payload).decode()

    with pytest.raises(TicketError) as caught:
        verify_ticket(envelope, PORTAL)
    assert caught.value.code == "ticket_signature_invalid"


@pytest.mark.parametrize("envelope", [None, [], {"payload": "x"}, {"payloadType": "text/plain", "payload": "", "signatures": []}])
def test_malformed_ticket_is_refused(envelope):
    with pytest.raises(TicketError) as caught:
        parse_ticket(envelope)
    assert caught.value.code == "ticket_invalid"


def test_signing_refuses_bad_claims():
    bad = claims()
    bad["level"] = "one"
    with pytest.raises(TicketError) as caught:
        sign_ticket(bad, PORTAL_KEY)
    assert caught.value.code == "ticket_invalid"


@pytest.mark.parametrize(
    ("edit", "received", "code"),
    [
        ({"vendor": "globex"}, ISSUED, "ticket_vendor_mismatch"),
        ({"card": {"model": "X100", "serial": "sn-2"}}, ISSUED, "ticket_card_mismatch"),
        ({"rule_pack": {"name": PACK.name, "sha256": "0" * 64}}, ISSUED, "ticket_scope_mismatch"),
        ({"run": {"tracks": ["finetuning"], "level": 1}}, ISSUED, "ticket_scope_mismatch"),
        ({"run": {"tracks": ["pretraining"], "level": 2}}, ISSUED, "ticket_scope_mismatch"),
        ({}, ISSUED + timedelta(days=15), "ticket_expired"),
        ({"created_at": "2026-02-28T00:00:00+00:00"}, ISSUED, "ticket_not_yet_valid"),
        ({"run": {"tracks": ["pretraining"], "level": 1, "started_at": "2026-02-01T00:00:00Z"}}, ISSUED, "ticket_not_yet_valid"),
    ],
)
def test_bundle_that_does_not_fit_is_refused(edit, received, code):
    ticket = verify_ticket(sign_ticket(claims(), PORTAL_KEY), PORTAL)

    with pytest.raises(TicketError) as caught:
        check_fits(ticket, manifest(**edit), received)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("edit", "value"),
    [
        ({"vendor": "globex"}, "'acme' / 'globex'"),
        ({"card": {"model": "X100", "serial": "sn-2"}}, "X100 (sn-1) / X100 (sn-2)"),
        ({"rule_pack": {"name": "other-2026.1", "sha256": "0" * 64}}, f"rule_pack {PACK.name} ({PACK.sha256[:12]}) / other-2026.1 (000000000000)"),
        ({"rule_pack": {"name": PACK.name, "sha256": "0" * 64}}, f"rule_pack {PACK.name} ({PACK.sha256[:12]}) / {PACK.name} (000000000000)"),
        ({"rule_pack": None}, f"rule_pack {PACK.name} ({PACK.sha256[:12]}) / -"),
        ({"run": {"tracks": ["finetuning"], "level": 1}}, "track pretraining / finetuning"),
        ({"run": {"tracks": [], "level": 1}}, "track pretraining / -"),
        ({"run": {"tracks": ["pretraining"], "level": 2}}, "level 1 / 2"),
    ],
)
def test_mismatch_value_names_ticket_then_bundle(edit, value):
    ticket = verify_ticket(sign_ticket(claims(), PORTAL_KEY), PORTAL)

    with pytest.raises(TicketError) as caught:
        check_fits(ticket, manifest(**edit), ISSUED)
    assert caught.value.value == value


def test_early_time_value_names_both_times():
    ticket = verify_ticket(sign_ticket(claims(), PORTAL_KEY), PORTAL)

    with pytest.raises(TicketError) as caught:
        check_fits(ticket, manifest(created_at="2026-02-28T00:00:00+00:00"), ISSUED)
    assert caught.value.value == f"created_at 2026-02-28T00:00:00+00:00 < issued_at {ticket.claims['issued_at']}"


def test_fitting_bundle_passes():
    ticket = verify_ticket(sign_ticket(claims(), PORTAL_KEY), PORTAL)

    check_fits(ticket, manifest(), ISSUED + timedelta(days=13))


def test_ticket_file_round_trip(tmp_path):
    envelope = sign_ticket(claims(), PORTAL_KEY)
    path = tmp_path / "ticket.json"
    path.write_bytes(encode_ticket_file(envelope))

    ticket = read_ticket_file(path)

    assert ticket.envelope == envelope
    check_run_fits(ticket, vendor="acme", card_model="X100", card_serial="sn-1",
                   rule_pack={"name": PACK.name, "sha256": PACK.sha256}, tracks=["pretraining"], level=1)


def test_unreadable_ticket_file(tmp_path):
    with pytest.raises(TicketError) as caught:
        read_ticket_file(tmp_path / "absent.json")
    assert caught.value.code == "ticket_unreadable"


def test_ticket_travels_in_the_signed_manifest(tmp_path):
    envelope = sign_ticket(claims(), PORTAL_KEY)
    run_dir = build_run(tmp_path / "run")
    run = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**run, "ticket": envelope}))
    vendor_key = generate_key()
    info = write_bundle(run_dir, tmp_path / "run.tar", vendor_key)

    bundle = open_bundle(info.path, Keyring([vendor_key.public_key]))

    assert bundle.ticket == envelope
    assert verify_ticket(bundle.ticket, PORTAL).claims["card"]["serial"] == "sn-1"
