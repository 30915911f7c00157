"""The `python -m agent` command line and its one error boundary."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from contextlib import contextmanager

from agent import __version__
from agent.commands import COMMANDS
from agent.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, AgentError, Terminated
from agent.i18n import LANGUAGES, N_, _, language_in_argv, set_language
from agent.log_format import LINE_FORMAT, LocalTimeFormatter

logger = logging.getLogger("agent")


# argparse's own messages that the agent's commands can show, as Python 3.11's argparse.py writes them,
# marked here so that the catalogue carries their Chinese.
ARGPARSE_MESSAGES = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("expected one argument"),
    N_("invalid %(type)s value: %(value)r"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
)


@contextmanager
def argparse_in_language():
    """Translate argparse's own messages through the agent's catalogue while the command line is parsed.

    argparse (checked in Python 3.11) looks each message up through its module
    global `_`, which it imports from gettext so that programs can supply a
    translation. This points that global at the agent's `_` and puts the
    original back afterwards.
    """
    original = getattr(argparse, "_", None)
    if original is None:
        yield
        return
    argparse._ = _
    try:
        yield
    finally:
        argparse._ = original


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the subparser of `command` gets its arguments, so only that module is imported."""
    parser = argparse.ArgumentParser(
        prog="python -m agent",
        description=_("Run the PaddlePaddle large-model certification workloads and pack the result bundle."),
    )
    parser.add_argument("--version", action="version", version=f"agent {__version__}", help=_("show the agent's version and exit"))
    parser.add_argument("-v", "--verbose", action="store_true", help=_("log debug messages and show tracebacks"))
    parser.add_argument(
        "--lang", dest="global_lang", choices=LANGUAGES,
        help=_("language of messages: zh or en (default: Chinese when LC_ALL, LC_MESSAGES or LANG starts with zh_, else English)"),
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        # Without its arguments a subparser must not handle --help itself: the second parse does that.
        subparser = subparsers.add_parser(name, help=_(entry.help), description=_(entry.help), add_help=name == command)
        if name == command:
            module = importlib.import_module(entry.module)
            module.add_arguments(subparser)
            subparser.set_defaults(handler=module.run)
    return parser


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line in two passes: the first finds the subcommand, the second parses its arguments."""
    command, _unparsed = build_parser().parse_known_args(argv)
    return build_parser(command.command).parse_args(argv)


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(LocalTimeFormatter(LINE_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    # The language is fixed before the parser is built, so that its help is in that language too.
    set_language(language_in_argv(sys.argv[1:] if argv is None else argv))
    with argparse_in_language():
        args = parse_arguments(argv)
    configure_logging(args.verbose)
    try:
        return args.handler(args)
    except AgentError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        # A stop while a run's workloads execute arrives as an AgentError that names the folder to resume
        # (agent.runner.execute.run_stopped); this is a stop anywhere else.
        print(_("interrupted"), file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
    except Exception:
        if args.verbose:
            raise
        logger.debug("unexpected error", exc_info=True)
        print("error[internal]: " + _("unexpected failure; rerun with --verbose for the traceback"), file=sys.stderr)
        return EXIT_FAILED


def exit_process(code: int) -> None:
    """End the process with `code`; a process of a launched job skips the interpreter's teardown.

    In launched runs of two or more processes on this machine, a worker
    sometimes died of SIGABRT after its run had finished and every record was
    written, and the launcher then failed the whole job. The abort comes after
    main() returns, in the teardown. There Paddle's exit handlers destroy its
    gloo process groups, and then the C++ static objects go. Which step aborts
    was not found. A launched worker therefore ends with os._exit once it has
    deleted its input check result and flushed its streams and log handlers.
    Every record the agent writes is closed as soon as it is written, so
    nothing else is left to flush, and the operating system releases the
    run-folder lock. A process outside a launched job exits the usual way.
    """
    if "PADDLE_TRAINER_ID" not in os.environ:
        sys.exit(code)
    from agent.runner.node_inputs import remove_own_results

    remove_own_results()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream has nothing left to write
    os._exit(code)
