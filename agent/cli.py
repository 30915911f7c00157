"""The `python -m agent` command line and its one error boundary."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from agent import __version__
from agent.commands import COMMANDS
from agent.errors import EXIT_FAILED, EXIT_INTERRUPTED, AgentError
from agent.i18n import LANGUAGES, _, language_in_argv, set_language

logger = logging.getLogger("agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agent",
        description=_("Run the PaddlePaddle large-model certification workloads and pack the result bundle."),
    )
    parser.add_argument("--version", action="version", version=f"agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_("log debug messages and show tracebacks"))
    parser.add_argument(
        "--lang", dest="global_lang", choices=LANGUAGES,
        help=_("language of messages: zh or en (default: Chinese when LC_ALL, LC_MESSAGES or LANG starts with zh_, else English)"),
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
        subparser = subparsers.add_parser(name, help=_(module.HELP), description=_(module.HELP))
        module.add_arguments(subparser)
        subparser.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # The language is fixed before the parser is built, so that its help is in that language too.
    set_language(language_in_argv(sys.argv[1:] if argv is None else argv))
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
        print(_("interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        if args.verbose:
            raise
        logger.debug("unexpected error", exc_info=True)
        print("error[internal]: " + _("unexpected failure; rerun with --verbose for the traceback"), file=sys.stderr)
        return EXIT_FAILED
