"""`python -m agent keygen`: create the Ed25519 key that signs result bundles."""

from __future__ import annotations

from pathlib import Path

from agent.errors import EXIT_OK, AgentError, from_coded_error, os_error_reason
from agent.i18n import _
from certification.signing import SigningError, generate_key, save_private_key, save_public_key


def add_arguments(parser):
    parser.add_argument("--out", required=True, type=Path, metavar="PATH", help=_("private key file to create; the public key goes to PATH.pub"))


def run(args) -> int:
    public_path = Path(f"{args.out}.pub")
    if public_path.exists():
        raise AgentError("key_file_exists", _("public key file {path} already exists").format(path=public_path), _("choose another --out path"))
    key = generate_key()
    try:
        save_private_key(key, args.out)
    except SigningError as error:
        raise from_coded_error(error) from None
    except OSError as error:
        raise AgentError("key_file_unwritable", _("cannot write {path}: {reason}").format(path=args.out, reason=os_error_reason(error)),
                         _("check that the folder exists and is writable")) from None
    save_public_key(key, public_path)
    print(key.key_id)
    return EXIT_OK
