"""`python -m agent keygen`: create the Ed25519 key that signs result bundles."""

from __future__ import annotations

import os
from pathlib import Path

from agent.commands._options import path_option
from agent.errors import EXIT_OK, AgentError, from_coded_error, os_error_reason
from agent.i18n import _
from certification.signing import SigningError, generate_key, save_private_key, save_public_key


def add_arguments(parser):
    parser.add_argument("--out", required=True, metavar="PATH", help=_("private key file to create; the public key goes to PATH.pub"))


def key_path(value: str) -> Path:
    """Return the private key file given to --out, raising AgentError for an empty path or one that names a folder."""
    path = path_option("--out", value, _("pass the path of the private key file to create, such as --out vendor.key"))
    if path.is_dir() or value.endswith(("/", os.sep)):
        raise AgentError("key_path_is_folder", _("--out {path} is a folder, not a key file").format(path=value),
                         _("pass the path of a file to create, such as --out {example}").format(example=path / "vendor.key"))
    return path


def run(args) -> int:
    out = key_path(args.out)
    public_path = Path(f"{out}.pub")
    if public_path.exists():
        raise AgentError("key_file_exists", _("public key file {path} already exists").format(path=public_path), _("choose another --out path"))
    key = generate_key()
    try:
        save_private_key(key, out)
    except SigningError as error:
        raise from_coded_error(error) from None
    except OSError as error:
        raise AgentError("key_file_unwritable", _("cannot write {path}: {reason}").format(path=out, reason=os_error_reason(error)),
                         _("check that the folder exists and is writable")) from None
    save_public_key(key, public_path)
    print(key.key_id)
    return EXIT_OK
