"""Placeholder until this command lands; replaced by its real module."""

HELP = "(not built yet)"


def add_arguments(parser):
    pass


def run(args):
    raise NotImplementedError("agent command 'bundle' is not built yet")
