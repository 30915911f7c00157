"""One module per `python -m agent` subcommand.

Each module defines `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int`. `COMMANDS` maps the subcommand name to its module path.
"""

COMMANDS = {
    "run": "agent.commands.run",
    "bundle": "agent.commands.bundle",
    "verify": "agent.commands.verify",
    "check": "agent.commands.check",
    "upload": "agent.commands.upload",
    "keygen": "agent.commands.keygen",
    "validate-pack": "agent.commands.validate_pack",
    "loadgen": "agent.commands.loadgen",
}
