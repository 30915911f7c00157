"""The `python -m agent` command line and its one error boundary."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from agent import __version__
from agent.commands import COMMANDS
from agent.errors import EXIT_FAILED, EXIT_INTERRUPTED, AgentError

logger = logging.getLogger("agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agent",
        description="Run the PaddlePaddle large-model certification workloads and pack the result bundle.",
    )
    parser.add_argument("--version", action="version", version=f"agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
        subparser = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(subparser)
        subparser.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except AgentError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        if args.verbose:
            raise
        logger.debug("unexpected error", exc_info=True)
        print("error[internal]: unexpected failure; rerun with --verbose for the traceback", file=sys.stderr)
        return EXIT_FAILED
