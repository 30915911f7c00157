"""`python -m agent run`: run the certification workloads of a profile into a run folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from agent.runner import RunRequest, start_run
from agent.i18n import _
from agent.runner.overrides import parse_assignments


REPO_ROOT = Path(__file__).resolve().parents[2]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True,
                        help=_("run profile: a name in agent/profiles (such as demo or standard-level1) or the path of a YAML file"))
    parser.add_argument("--out", type=Path, help=_("run folder to create (default: runs/<profile>-<time>)"))
    parser.add_argument("--resume", action="store_true",
                        help=_("continue the run in --out, skipping workloads whose result.json says completed"))
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT,
                        help=_("folder that the rule pack's data paths are relative to (default: the repository)"))
    parser.add_argument("--vendor", metavar="SLUG",
                        help=_("vendor recorded in run.json: the portal's slug of your vendor, such as demo-vendor, "
                               "or its exact name there (default: the profile's)"))
    parser.add_argument("--card-model", help=_("card model recorded in run.json (default: the profile's)"))
    parser.add_argument("--card-serial", help=_("card serial number recorded in run.json (default: the profile's)"))
    parser.add_argument("--device", metavar="TYPE",
                        help=_("Paddle device type: cpu, gpu, xpu, or a PaddleCustomDevice type such as npu "
                             "(default: the profile's); recorded in run.json and environment.json"))
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help=_("set a hyperparameter that the rule pack marks free, such as per_device_train_batch_size=2; "
                             "repeatable; any other key is rejected"))
    parser.add_argument("--workloads", metavar="ID[,ID...]",
                        help=_("run only these workloads of the plan, with the workloads they start from"))
    parser.add_argument("--checkpoint", dest="checkpoints", action="append", default=[], metavar="MODEL=DIR",
                        help=_("load the released checkpoint of a pack model from DIR instead of its path under --data-root; "
                             "repeatable; the pack's digest is still checked"))
    parser.add_argument("--ticket", type=Path, metavar="FILE",
                        help=_("run ticket file from the portal; its vendor and card become the run's, and it is embedded in run.json"))


def apply_ticket(args: argparse.Namespace) -> dict | None:
    """Read --ticket, fill the vendor and card from it, and refuse a run that does not fit it."""
    from agent.errors import from_core_error
    from agent.runner.execute import load_pack
    from agent.runner.profiles import load_profile
    from certification.errors import TicketError
    from certification.tickets import check_run_fits, read_ticket_file

    if args.ticket is None:
        return None
    try:
        ticket = read_ticket_file(args.ticket)
        profile = load_profile(args.profile)
        args.vendor = args.vendor or ticket.claims["vendor"]
        args.card_model = args.card_model or ticket.claims["card"]["model"]
        args.card_serial = args.card_serial or ticket.claims["card"]["serial"]
        pack = load_pack(profile.rule_pack)
        check_run_fits(ticket, vendor=args.vendor, card_model=args.card_model, card_serial=args.card_serial,
                       rule_pack={"name": pack.name, "sha256": pack.sha256}, tracks=profile.tracks, level=profile.level)
    except TicketError as error:
        raise from_core_error(error) from None
    return ticket.envelope


def parse_checkpoint_folders(assignments: list[str]) -> dict[str, Path]:
    """Turn `MODEL=DIR` strings into a dict of model name -> folder."""
    from agent.errors import AgentError

    folders: dict[str, Path] = {}
    for assignment in assignments:
        model, separator, directory = assignment.partition("=")
        if not separator or not model.strip() or not directory.strip():
            raise AgentError("checkpoint_option_invalid", _("--checkpoint {value} is not of the form MODEL=DIR").format(value=repr(assignment)),
                             _("write it as, for example, --checkpoint llama1-13b=/models/llama-13b"))
        folders[model.strip()] = Path(directory.strip())
    return folders


def parse_workload_ids(value: str | None) -> list[str] | None:
    """Split --workloads at commas, dropping blanks; None when the option is absent."""
    from agent.errors import AgentError

    if value is None:
        return None
    ids = [item.strip() for item in value.split(",") if item.strip()]
    if not ids:
        raise AgentError("workloads_empty", _("--workloads {value} names no workload").format(value=repr(value)),
                         _("pass workload ids separated by commas, such as --workloads sft-llama,lora-llama, or leave out --workloads to run the whole plan"))
    return ids


def run(args: argparse.Namespace) -> int:
    workloads = parse_workload_ids(args.workloads)
    ticket = apply_ticket(args)
    request = RunRequest(
        profile=args.profile,
        out=args.out,
        resume=args.resume,
        data_root=args.data_root,
        vendor=args.vendor,
        card_model=args.card_model,
        card_serial=args.card_serial,
        device=args.device,
        overrides=parse_assignments(args.assignments),
        workloads=workloads,
        ticket=ticket,
        checkpoints=parse_checkpoint_folders(args.checkpoints),
    )
    run_dir, exit_code = start_run(request)
    logger.info(_("run folder: {path}").format(path=run_dir))
    print(run_dir)
    return exit_code
