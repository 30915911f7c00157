"""`python -m agent bundle`: pack a run folder into one signed result bundle."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.commands._fields import format_fields
from agent.commands._verification import agent_error
from agent.errors import EXIT_OK, EXIT_USAGE, AgentError
from agent.i18n import _, ngettext
from agent.runner.folder import RunFolder
from agent.runner.lock import finished_run_lock
from certification.bundle import read_run_json, write_bundle
from certification.errors import BundleError
from certification.signing import SigningError, load_private_key


def add_arguments(parser):
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=_("run folder written by `python -m agent run`"))
    parser.add_argument("--key", required=True, type=Path, help=_("Ed25519 private key file from `python -m agent keygen`"))
    parser.add_argument("--out", type=Path, help=_("bundle file to write (default: RUN_DIR.bundle.tar beside the run folder)"))
    parser.add_argument("--force", action="store_true", help=_("replace the bundle file when it already exists"))
    parser.add_argument("--partial", action="store_true",
                        help=_("pack the run even when workloads of its plan have not finished; the portal fails "
                               "the criteria of those workloads, and the card's public history lists the submission "
                               "with those failures"))


def default_out_path(run_dir: Path) -> Path:
    run_dir = run_dir.resolve()
    return run_dir.with_name(f"{run_dir.name}.bundle.tar")


def run(args) -> int:
    out = args.out or default_out_path(args.run_dir)
    if out.exists() and not args.force:
        # A bundle that was already uploaded must not vanish under a new bundle id.
        raise AgentError("bundle_file_exists", _("bundle file {path} already exists").format(path=out),
                         _("pass another --out, or --force to replace it"), EXIT_USAGE)
    try:
        with finished_run_lock(args.run_dir):
            unfinished = unfinished_workloads(args.run_dir)
            if unfinished and not args.partial:
                raise unfinished_run_error(args.run_dir, unfinished)
            key = load_private_key(args.key)
            info = write_bundle(args.run_dir, out, key)
    except (BundleError, SigningError) as error:
        raise agent_error(error) from None
    print(format_fields([
        ("bundle", info.path),
        ("bundle_id", info.bundle_id),
        ("key_id", info.key_id),
        ("sha256", info.sha256),
        ("files", info.file_count),
    ]))
    if unfinished:
        print(_("warning: packed a partial run: workloads that have not finished: {names}; the portal fails their "
                "criteria, and the card's public history lists this submission with those failures").format(
            names=", ".join(unfinished)), file=sys.stderr)
    failed = failed_workloads(args.run_dir)
    if failed:
        # Still packed: a failed workload is a result the portal records and judges as failed.
        print(_("warning: workloads that failed are packed as failed and their criteria will fail: {names}").format(
            names=", ".join(failed)), file=sys.stderr)
    return EXIT_OK


def failed_workloads(run_dir: Path) -> list[str]:
    """Return the ids of the run's workloads whose result.json has status failed, in id order."""
    folder = RunFolder(run_dir, writer=False)
    workloads = sorted(path.name for path in (run_dir / "workloads").glob("*") if path.is_dir())
    return [workload_id for workload_id in workloads if folder.status(workload_id) == "failed"]


def unfinished_workloads(run_dir: Path) -> list[str]:
    """Return the workloads of the run's plan (run.json `workloads`) that have no result.json yet, in plan order.

    A workload gets its result.json when it completes, fails or is not supported on the device,
    so the ones without it were not reached or were stopped, such as by Ctrl-C or a killed job.
    """
    planned = read_run_json(run_dir).get("workloads")
    if not isinstance(planned, list):
        return []
    folder = RunFolder(run_dir, writer=False)
    return [workload_id for workload_id in planned
            if isinstance(workload_id, str) and not (folder.workload_dir(workload_id) / "result.json").is_file()]


def unfinished_run_error(run_dir: Path, unfinished: list[str]) -> AgentError:
    profile = read_run_json(run_dir).get("profile") or "PROFILE"
    return AgentError(
        "run_unfinished",
        ngettext("run {path} is not finished: {count} workload of its plan has no result yet: {names}",
                 "run {path} is not finished: {count} workloads of its plan have no result yet: {names}",
                 len(unfinished)).format(path=run_dir, count=len(unfinished), names=", ".join(unfinished)),
        _("finish the run with `python -m agent run --profile {profile} --resume --out {path}` and the other options "
          "it started with, then pack it again; --partial packs it as it is, and the portal then fails the "
          "criteria of the unfinished workloads").format(profile=profile, path=run_dir),
    )
