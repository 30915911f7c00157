"""Key loading and bundle opening shared by `verify` and `check`, with errors mapped to exit codes."""

from __future__ import annotations

from pathlib import Path

from agent.errors import EXIT_REJECTED, EXIT_USAGE, AgentError, from_coded_error, from_core_error
from agent.i18n import _
from certification.bundle import VerifiedBundle, open_bundle
from certification.errors import BundleError
from certification.signing import Keyring, PublicKey, SigningError, load_public_key_file

# Refusals that come from the command line rather than from the bundle's contents.
USAGE_CODES = frozenset({"archive_unreadable", "key_file_unreadable", "run_dir_missing", "run_file_unreadable"})


def agent_error(error: BundleError | SigningError) -> AgentError:
    exit_code = EXIT_USAGE if error.code in USAGE_CODES else EXIT_REJECTED
    if isinstance(error, BundleError):
        return from_core_error(error, exit_code)
    return from_coded_error(error, exit_code)


def load_keyring(paths: list[Path]) -> Keyring:
    return Keyring(load_public_key(path) for path in paths)


def load_public_key(path: Path) -> PublicKey:
    try:
        return load_public_key_file(path)
    except SigningError as error:
        failure = agent_error(error)
        if "path" not in error.values:
            # The core parses the key's text without knowing its file, so the message names the file here.
            failure.message = _("public key file {path}: {message}").format(path=path, message=failure.message)
        raise failure from None


def open_verified(path: Path, keyring: Keyring) -> VerifiedBundle:
    try:
        return open_bundle(path, keyring)
    except BundleError as error:
        failure = agent_error(error)
        # `check` opens several bundles, so the message names the one that failed.
        failure.message = _("bundle {path}: {message}").format(path=path, message=failure.message)
        raise failure from None
