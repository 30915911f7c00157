"""`verify` with run tickets, and `run --ticket` refusing a run that does not fit its ticket."""

import json
from datetime import datetime, timedelta, timezone

from agent.cli import main
from agent.errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from certification.bundle import write_bundle
from certification.rulepack import load_rule_pack
from certification.signing import generate_key, save_public_key
from certification.tickets import encode_ticket_file, new_claims, sign_ticket
from tests.certification.runfolder import build_run

PORTAL_KEY = generate_key()


def ticket(issued_at=None, **changes):
    pack = load_rule_pack("smoke-2026.1")
    values = dict(vendor="acme", card_model="X100", card_serial="SN-1", track="pretraining", level=1,
                  rule_pack={"name": pack.name, "sha256": pack.sha256},
                  issued_at=issued_at or datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1),
                  lifetime=timedelta(days=2))
    values.update(changes)
    return sign_ticket(new_claims(**values), PORTAL_KEY)


def bundle_with(tmp_path, envelope):
    run_dir = build_run(tmp_path / "run")
    run = json.loads((run_dir / "run.json").read_text())
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    pack = load_rule_pack("demo-2026.1")
    claims_pack = {"name": pack.name, "sha256": pack.sha256}
    run.update(vendor="acme", ticket=envelope, started_at=now, rule_pack=claims_pack)
    (run_dir / "run.json").write_text(json.dumps(run))
    key = generate_key()
    save_public_key(key, tmp_path / "vendor.pub")
    save_public_key(PORTAL_KEY, tmp_path / "portal.pub")
    return write_bundle(run_dir, tmp_path / "run.tar", key).path


def test_verify_shows_and_checks_the_ticket(tmp_path, capsys):
    pack = load_rule_pack("demo-2026.1")
    path = bundle_with(tmp_path, ticket(rule_pack={"name": pack.name, "sha256": pack.sha256}))

    code = main(["verify", str(path), "--public-key", str(tmp_path / "vendor.pub"), "--portal-key", str(tmp_path / "portal.pub")])

    assert code == EXIT_OK
    assert "signed by the portal and fits the bundle" in capsys.readouterr().out


def test_verify_refuses_ticket_for_another_pack(tmp_path, capsys):
    path = bundle_with(tmp_path, ticket())

    code = main(["verify", str(path), "--public-key", str(tmp_path / "vendor.pub"), "--portal-key", str(tmp_path / "portal.pub")])

    assert code == EXIT_REJECTED
    assert "ticket_scope_mismatch" in capsys.readouterr().err


def test_verify_without_portal_key_says_the_signature_is_unchecked(tmp_path, capsys):
    path = bundle_with(tmp_path, ticket())

    assert main(["verify", str(path), "--public-key", str(tmp_path / "vendor.pub")]) == EXIT_OK
    assert "signature not checked" in capsys.readouterr().out


def test_run_refuses_ticket_for_another_card(tmp_path, capsys):
    ticket_file = tmp_path / "ticket.json"
    ticket_file.write_bytes(encode_ticket_file(ticket(card_serial="SN-1")))

    code = main(["run", "--profile", "smoke", "--out", str(tmp_path / "run"), "--ticket", str(ticket_file), "--card-serial", "SN-2"])

    assert code == EXIT_USAGE
    assert "ticket_card_mismatch" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_run_refuses_unreadable_ticket(tmp_path, capsys):
    code = main(["run", "--profile", "smoke", "--out", str(tmp_path / "run"), "--ticket", str(tmp_path / "absent.json")])

    assert code == EXIT_USAGE
    assert "ticket_unreadable" in capsys.readouterr().err
