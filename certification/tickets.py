"""Run tickets: one-time permissions, signed by the portal, to run one certification.

A ticket is a DSSE envelope over JSON claims (vendor, card, track, level,
rule pack, nonce, issue and expiry times), signed with the portal's own
Ed25519 key. The portal issues it; `python -m agent run --ticket FILE` copies
the envelope into run.json, so it ends up in the bundle's manifest under the
vendor's signature; the portal then checks the portal signature, that the
bundle fits the ticket and that the ticket was not used before.

The envelope is kept as the portal wrote it: its payload stays base64, so the
signed bytes never pass through a JSON parser and back.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError

from certification import records
from certification.errors import TicketError, os_error_details
from certification.signing import Keyring, PrivateKey

TICKET_VERSION = 1
PAYLOAD_TYPE = "application/vnd.accel-cert.run-ticket+json"
NONCE_BYTES = 32
MAX_TICKET_BYTES = 64 * 1024

CLAIMS_SCHEMA = {
    "type": "object",
    "required": ["ticket_version", "ticket_id", "vendor", "card", "track", "level", "rule_pack", "nonce", "issued_at", "expires_at"],
    "additionalProperties": False,
    "properties": {
        "ticket_version": {"const": TICKET_VERSION},
        "ticket_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "vendor": {"type": "string", "minLength": 1},
        "card": {
            "type": "object", "required": ["model", "serial"], "additionalProperties": False,
            "properties": {"model": {"type": "string", "minLength": 1}, "serial": {"type": "string", "minLength": 1}},
        },
        "track": {"type": "string", "minLength": 1},
        "level": {"type": "integer", "minimum": 1},
        "rule_pack": {
            "type": "object", "required": ["name", "sha256"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        },
        "nonce": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "issued_at": {"type": "string"},
        "expires_at": {"type": "string"},
    },
}


@dataclass(frozen=True)
class Ticket:
    """The claims of a ticket, and the envelope they came from."""

    claims: dict[str, Any]
    envelope: dict[str, Any]

    @property
    def ticket_id(self) -> str:
        return self.claims["ticket_id"]

    @property
    def issued_at(self) -> datetime:
        return _parse_time(self.claims["issued_at"])

    @property
    def expires_at(self) -> datetime:
        return _parse_time(self.claims["expires_at"])


def new_claims(*, vendor: str, card_model: str, card_serial: str, track: str, level: int,
               rule_pack: dict[str, str], issued_at: datetime, lifetime: timedelta) -> dict[str, Any]:
    """Return the claims of a fresh ticket with a random id and nonce."""
    return {
        "ticket_version": TICKET_VERSION,
        "ticket_id": uuid.uuid4().hex,
        "vendor": vendor,
        "card": {"model": card_model, "serial": card_serial},
        "track": track,
        "level": level,
        "rule_pack": {"name": rule_pack["name"], "sha256": rule_pack["sha256"]},
        "nonce": secrets.token_hex(NONCE_BYTES),
        "issued_at": issued_at.isoformat(timespec="seconds"),
        "expires_at": (issued_at + lifetime).isoformat(timespec="seconds"),
    }


def sign_ticket(claims: dict[str, Any], key: PrivateKey) -> dict[str, Any]:
    """Return the ticket envelope (a dict) over the claims, signed by the portal's key."""
    _check_claims(claims)
    payload = json.dumps(claims, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    envelope.sign(key.signer)
    return envelope.to_dict()


def encode_ticket_file(envelope: dict[str, Any]) -> bytes:
    """Return the bytes of a ticket file: the envelope as indented ASCII JSON."""
    return (json.dumps(envelope, ensure_ascii=True, indent=2, sort_keys=True) + "\n").encode("ascii")


def read_ticket_file(path: Path) -> Ticket:
    """Read a ticket file and check its form, without checking the portal's signature."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_TICKET_BYTES + 1)
    except OSError as error:
        raise TicketError("ticket_unreadable", str(path), **os_error_details(error)) from None
    if len(data) > MAX_TICKET_BYTES:
        raise TicketError("ticket_invalid", str(path), limit=MAX_TICKET_BYTES)
    try:
        envelope = records.loads(data)
    except ValueError as error:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise _json_error(str(path), error) from None
    return parse_ticket(envelope)


def parse_ticket(envelope: Any) -> Ticket:
    """Return the ticket an envelope dict carries, checking its form but not its signature."""
    parsed = _envelope(envelope)
    try:
        claims = records.loads(parsed.payload)
    except ValueError as error:
        raise _json_error("payload", error) from None
    _check_claims(claims)
    return Ticket(claims, envelope)


def verify_ticket(envelope: Any, keyring: Keyring) -> Ticket:
    """Return the ticket if a key of `keyring` (the portal's) signed it; raise TicketError otherwise."""
    ticket = parse_ticket(envelope)
    keys = [key.sslib_key for key in keyring]
    try:
        Envelope.from_dict(copy.deepcopy(envelope)).verify(keys, 1)
    except VerificationError:
        raise TicketError("ticket_signature_invalid", ", ".join(key.key_id for key in keyring) or "(none)") from None
    return ticket


def check_fits(ticket: Ticket, manifest: dict[str, Any], received_at: datetime) -> None:
    """Raise TicketError unless the bundle's manifest matches the ticket and arrived before it expired.

    `received_at` is when the portal stored the upload; the manifest's own
    times are the vendor's word and are only checked for consistency.
    """
    claims = ticket.claims
    vendor = _vendor_name(manifest.get("vendor"))
    if vendor != claims["vendor"]:
        raise TicketError("ticket_vendor_mismatch", f"{claims['vendor']!r} / {vendor!r}")
    card = manifest.get("card") if isinstance(manifest.get("card"), dict) else {}
    named = {"model": str(card.get("model", "")), "serial": str(card.get("serial", ""))}
    if named != claims["card"]:
        raise TicketError("ticket_card_mismatch", f"{claims['card']['model']} ({claims['card']['serial']}) / {named['model']} ({named['serial']})")
    _check_scope(claims, manifest)
    _check_times(ticket, manifest, received_at)


def _check_scope(claims: dict, manifest: dict) -> None:
    run = manifest.get("run") or {}
    if manifest.get("rule_pack") != claims["rule_pack"]:
        raise TicketError("ticket_scope_mismatch", f"rule_pack {_pack_label(claims['rule_pack'])} / {_pack_label(manifest.get('rule_pack'))}")
    tracks = run.get("tracks") or []
    if claims["track"] not in tracks:
        raise TicketError("ticket_scope_mismatch", f"track {claims['track']} / {', '.join(map(str, tracks)) or '-'}")
    if run.get("level") != claims["level"]:
        raise TicketError("ticket_scope_mismatch", f"level {claims['level']} / {run.get('level')}")


def _pack_label(rule_pack: Any) -> str:
    """Return the pack's name and the first 12 hex digits of its sha256, so two packs of one name still read apart, or "-" for none."""
    if not isinstance(rule_pack, dict):
        return "-"
    return f"{rule_pack.get('name')} ({str(rule_pack.get('sha256'))[:12]})"


def _check_times(ticket: Ticket, manifest: dict, received_at: datetime) -> None:
    if received_at > ticket.expires_at:
        raise TicketError("ticket_expired", ticket.claims["expires_at"])
    claimed = {"run.started_at": (manifest.get("run") or {}).get("started_at"), "created_at": manifest.get("created_at")}
    for label, text in claimed.items():
        if text and _parse_time(text, "ticket_not_yet_valid", label) < ticket.issued_at:
            raise TicketError("ticket_not_yet_valid", f"{label} {text} < issued_at {ticket.claims['issued_at']}")


def check_run_fits(ticket: Ticket, *, vendor: str, card_model: str, card_serial: str,
                   rule_pack: dict[str, str], tracks: list[str], level: int) -> None:
    """Raise TicketError unless a run about to start matches the ticket; the agent calls it before running."""
    manifest = {
        "vendor": vendor, "card": {"model": card_model, "serial": card_serial},
        "rule_pack": {"name": rule_pack["name"], "sha256": rule_pack["sha256"]},
        "run": {"tracks": tracks, "level": level},
    }
    check_fits(ticket, manifest, ticket.issued_at)


def _vendor_name(vendor: Any) -> str:
    if isinstance(vendor, dict):
        return str(vendor.get("slug") or vendor.get("id") or vendor.get("name") or "")
    return str(vendor or "")


def _json_error(where: str, error: ValueError) -> TicketError:
    """Build `ticket_invalid` for text at `where` (a file path, or "payload") that is not JSON, naming the position."""
    line, column, problem = records.json_error_position(error)
    return TicketError("ticket_invalid", where, line=line, column=column, problem=problem)


def _envelope(envelope: Any) -> Envelope:
    field = _envelope_field_problem(envelope)
    if field is None:
        try:
            parsed = Envelope.from_dict(copy.deepcopy(envelope))
        except (KeyError, TypeError, ValueError, AttributeError, FormatError):
            field = _envelope_base64_problem(envelope)
    if field is not None:
        raise TicketError("ticket_invalid", field, envelope_field=field)
    if parsed.payload_type != PAYLOAD_TYPE:
        raise TicketError("ticket_invalid", parsed.payload_type, payload_type=parsed.payload_type, expected=PAYLOAD_TYPE)
    return parsed


def _envelope_field_problem(envelope: Any) -> str | None:
    """Return the JSONPath of the first DSSE envelope field that is missing or of the wrong type, or None."""
    if not isinstance(envelope, dict):
        return "$"
    for key in ("payload", "payloadType"):
        if not isinstance(envelope.get(key), str):
            return f"$.{key}"
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list):
        return "$.signatures"
    for index, signature in enumerate(signatures):
        if not isinstance(signature, dict):
            return f"$.signatures[{index}]"
        for key in ("keyid", "sig"):
            if not isinstance(signature.get(key), str):
                return f"$.signatures[{index}].{key}"
    return None


def _envelope_base64_problem(envelope: dict) -> str:
    """Return the JSONPath of the envelope's first text that is not base64, or of the signatures when two share a key id.

    Called when every field has its type but securesystemslib still rejected the envelope.
    """
    texts = [("$.payload", envelope["payload"])]
    texts += [(f"$.signatures[{index}].sig", signature["sig"]) for index, signature in enumerate(envelope["signatures"])]
    for field, text in texts:
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return field
    return "$.signatures"


def _check_claims(claims: Any) -> None:
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(CLAIMS_SCHEMA).iter_errors(claims))
    if error is not None:
        raise _claims_error(error)
    for key in ("issued_at", "expires_at"):
        _parse_time(claims[key], claim=f"$.{key}")


def _claims_error(error: jsonschema.ValidationError) -> TicketError:
    """Build `ticket_invalid` naming the claim (a JSONPath) and the schema rule it breaks, without jsonschema's English text."""
    where = "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    if error.validator == "required":
        missing = next((name for name in error.validator_value if name not in error.instance), "")
        claim = f"{where}.{missing}"
        return TicketError("ticket_invalid", claim, missing_claim=claim)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(name) for name in error.instance if name not in allowed)
        claims = ", ".join(f"{where}.{name}" for name in extra)
        return TicketError("ticket_invalid", claims, unexpected_claim=claims)
    expected = error.validator_value if not isinstance(error.validator_value, bool) else str(error.validator_value).lower()
    return TicketError("ticket_invalid", where, claim=where, keyword=error.validator, expected=expected)


def _parse_time(text: str, code: str = "ticket_invalid", claim: str = "-") -> datetime:
    """Parse an ISO 8601 time with a time zone, or raise `code` naming `claim`, the JSONPath or label of the time."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise TicketError(code, text, time_claim=claim)
    return moment
