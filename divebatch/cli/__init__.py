"""`python -m divebatch` (console script `divebatch`): one module per command group.

Every RunConfig field is a flag of `run` (`--max-batch-size`, `--no-augment`, ...). Bad input
exits with code 2 and one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from divebatch.cli import critical_batch, experiments, maintenance, run
from divebatch.cli.common import Parser, UsageError, add_db_flag

COMMANDS = (run.add_run, run.add_presets, run.add_list, run.add_show, run.add_export,
            run.add_compare, run.add_worker, run.add_download,
            experiments.add_sweep, experiments.add_reproduce, maintenance.add_resume,
            maintenance.add_prune, experiments.add_ray_driver,
            critical_batch.add_critical_batch, critical_batch.add_measure_worker)


def invoked_as() -> str:
    """The command as the user typed it: the installed ``divebatch`` or ``python -m divebatch``
    (usage lines and error messages name it)."""
    return "divebatch" if Path(sys.argv[0]).name == "divebatch" else "python -m divebatch"


class PrintVersion(argparse.Action):
    """``--version``, looked up only when asked (reading the metadata costs every start 20 ms)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the installed version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        import divebatch
        print(f"divebatch {divebatch.__version__}")  # the package, however it was invoked
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=invoked_as(),
                    description="DiveBatch Lab: adaptive batch-size SGD experiments")
    parser.add_argument("--version", action=PrintVersion)
    add_db_flag(parser)
    sub = parser.add_subparsers(metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return 2
        return args.handler(args) or 0
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like, closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
