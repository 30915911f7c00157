"""`python -m agent verify`: check a bundle's signature, manifest and every file."""

from __future__ import annotations

from pathlib import Path

from agent.commands._verification import load_keyring, open_verified
from agent.errors import EXIT_OK

HELP = "Verify a result bundle against one or more trusted public keys; exit 3 when it does not verify."


def add_arguments(parser):
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle file written by `python -m agent bundle`")
    parser.add_argument(
        "--public-key", dest="public_keys", action="append", required=True, type=Path, metavar="PUB",
        help="trusted Ed25519 public key (.pub) file; repeat the option for several keys",
    )


def run(args) -> int:
    bundle = open_verified(args.bundle, load_keyring(args.public_keys))
    manifest = bundle.manifest
    print(f"verified:  {args.bundle}")
    print(f"bundle id: {bundle.bundle_id}")
    print(f"key id:    {bundle.key_id}")
    print(f"rule pack: {manifest['rule_pack']['name']} (sha256 {manifest['rule_pack']['sha256']})")
    print(f"files:     {len(manifest['files'])}")
    print(f"workloads: {', '.join(bundle.workloads()) or 'none'}")
    return EXIT_OK
