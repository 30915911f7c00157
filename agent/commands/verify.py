"""`python -m agent verify`: check a bundle's signature, manifest and every file, and its run ticket."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from agent.commands._fields import format_fields
from agent.commands._verification import load_keyring, open_verified
from agent.errors import EXIT_OK, EXIT_REJECTED, from_core_error
from agent.i18n import _
from agent.tracks import track_name
from certification.errors import TicketError
from certification.tickets import check_fits, parse_ticket, verify_ticket


def add_arguments(parser):
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help=_("bundle file written by `python -m agent bundle`"))
    parser.add_argument(
        "--public-key", dest="public_keys", action="append", required=True, type=Path, metavar="PUB",
        help=_("trusted Ed25519 public key (.pub) file; repeat the option for several keys"),
    )
    parser.add_argument(
        "--portal-key", dest="portal_keys", action="append", default=[], type=Path, metavar="PUB",
        help=_("the portal's ticket public key; with it the run ticket's signature, fit and expiry are checked too"),
    )


def run(args) -> int:
    bundle = open_verified(args.bundle, load_keyring(args.public_keys))
    manifest = bundle.manifest
    print(format_fields([
        ("verified", args.bundle),
        ("bundle_id", bundle.bundle_id),
        ("key_id", bundle.key_id),
        ("signed_at", manifest["created_at"]),
        ("rule_pack", f"{manifest['rule_pack']['name']} (sha256 {manifest['rule_pack']['sha256']})"),
        ("files", len(manifest["files"])),
        ("workloads", ", ".join(bundle.workloads()) or _("none")),
        ("ticket", describe_ticket(manifest, args.portal_keys)),
    ]))
    return EXIT_OK


def describe_ticket(manifest: dict, portal_keys: list[Path]) -> str:
    """Describe the bundle's run ticket; with portal keys, check it as the portal would, except for reuse."""
    envelope = manifest.get("ticket")
    if envelope is None:
        return _("none")
    try:
        if not portal_keys:
            ticket = parse_ticket(envelope)
        else:
            ticket = verify_ticket(envelope, load_keyring(portal_keys))
            check_fits(ticket, manifest, datetime.now(timezone.utc))
    except TicketError as error:
        raise from_core_error(error, EXIT_REJECTED) from None
    claims = ticket.claims
    text = _("{ticket} ({track} level {level}, card {serial}, expires {expires})").format(
        ticket=claims["ticket_id"], track=track_name(claims["track"]), level=claims["level"], serial=claims["card"]["serial"], expires=claims["expires_at"])
    if not portal_keys:
        return text + _("; signature not checked, pass --portal-key to check it")
    return text + _("; signed by the portal and fits the bundle (the portal also checks it is used once)")
