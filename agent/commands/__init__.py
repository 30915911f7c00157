"""One module per `python -m agent` subcommand, loaded only when that subcommand runs.

Each module defines `add_arguments(parser)` and `run(args) -> int`. `COMMANDS`
maps the subcommand name to its module path and one line of help, so that
the command line lists every subcommand without importing their modules.
Keep the modules' own imports light too: `run` imports Paddle only in the
workload runners, and `check` imports the verdict engine (ROUGE with NLTK and
SciPy, seconds of start-up) only when it judges.
"""

from typing import NamedTuple

from agent.i18n import N_


class Command(NamedTuple):
    module: str
    help: str


COMMANDS = {
    "run": Command("agent.commands.run", N_("Run the workloads that a profile's tracks and level require, and write the run folder.")),
    "bundle": Command("agent.commands.bundle", N_("Pack a run folder into a signed result bundle (an uncompressed tar with a manifest and a DSSE envelope).")),
    "verify": Command("agent.commands.verify", N_("Verify a result bundle against one or more trusted public keys; exit 3 when it does not verify.")),
    "check": Command("agent.commands.check", N_("Verify a bundle, judge it against reference bundles and print each criterion; exit 4 when one fails.")),
    "upload": Command("agent.commands.upload", N_("Upload a signed bundle to the certification portal and print the submission's address.")),
    "keygen": Command("agent.commands.keygen", N_("Create an Ed25519 signing key: PATH (private, mode 0600) and PATH.pub; print the key id.")),
    "validate-pack": Command("agent.commands.validate_pack", N_("Validate a rule pack YAML file; print every problem with its path and exit 3 when there is one.")),
    "loadgen": Command("agent.commands.loadgen", N_("Search the highest load whose percentile TTFT meets the limit, against an OpenAI-compatible streaming endpoint.")),
}
