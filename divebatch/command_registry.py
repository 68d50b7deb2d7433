"""Subcommands defined outside commands.py; each entry is an `add_X(subparsers)` function."""

EXTRA_COMMANDS: list = []
