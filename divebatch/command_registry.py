"""Subcommands defined outside commands.py; each entry is an `add_X(subparsers)` function."""

from .experiment_commands import add_ray_driver, add_reproduce, add_sweep
from .maintenance import add_prune, add_resume

EXTRA_COMMANDS: list = [add_sweep, add_reproduce, add_resume, add_prune, add_ray_driver]
