"""What every command group shares: the parser class, the --db and config flags, UsageError,
opening the store, plain-text tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

from divebatch.config import RunConfig, allowed_range, config_fields, short_repr

MAX_CONFIG_BYTES = 1_000_000  # a config file is a few hundred bytes of JSON


class UsageError(Exception):
    """Bad input from the user: one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def add_db_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=argparse.SUPPRESS,
                        help="run store file (default: $DIVEBATCH_DB or .divebatch/runs.db)")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field; unset flags are absent from the namespace."""
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="JSON file of RunConfig fields; flags given here override it")
    parser.add_argument("--preset", default=argparse.SUPPRESS, metavar="NAME",
                        help="start from a named preset (e.g. cifar10_small, cifar10_paper, "
                             "digits_race; see `python -m divebatch presets`); the config "
                             "file and flags override it")
    for f in config_fields():
        flag = flag_name(f.name)
        text = f"{f.metadata['help']} ({allowed_range(f)}; default {f.default!r})"
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, type=flag_type(f), default=argparse.SUPPRESS,
                                help=text, metavar=f.name.upper())


def flag_name(field_name: str) -> str:
    """The `run` flag of a RunConfig field: what the user types, so what errors name."""
    return "--" + field_name.replace("_", "-")


def flag_type(f: dataclasses.Field):
    """argparse `type=` for a field: text that is no int / float says the field's range."""
    kind = {"int": int, "float": float, "str": str}[f.type]

    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"should be {allowed_range(f)}, but got "
                                             f"{short_repr(text)}") from None
    convert.__name__ = f.type  # argparse names the type in some messages
    return convert


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """RunConfig from `--config FILE` and flags; raises UsageError listing bad fields."""
    values = preset_fields(args.preset) if hasattr(args, "preset") else {}
    from_file = read_config_file(args.config) if hasattr(args, "config") else {}
    flags = {f.name: getattr(args, f.name) for f in config_fields() if hasattr(args, f.name)}
    values.update(from_file)
    values.update(flags)
    in_file_only = set(from_file) - set(flags)

    def name_of(field_name: str) -> str:  # as the user wrote it: a key of the file, or a flag
        return field_name if field_name in in_file_only else flag_name(field_name)
    try:
        config = RunConfig.from_dict(values)
        config.validate(name_of=name_of)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error).replace("\n", "; ")) from None
    return config


def preset_fields(name: str) -> dict:
    from divebatch.presets import PRESETS
    if name not in PRESETS:
        raise UsageError(f"--preset should be one of {', '.join(PRESETS)}, but got {name!r}")
    return dict(PRESETS[name].fields)


def read_config_file(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_CONFIG_BYTES + 1)
        if len(text) > MAX_CONFIG_BYTES:
            raise UsageError(f"--config: {path} is larger than {MAX_CONFIG_BYTES} bytes; "
                             f"a config file holds RunConfig fields only")
        values = json.loads(text)
    except OSError as error:
        raise UsageError(f"--config: cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise UsageError(f"--config: {path} is not valid JSON ({reason})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config: {path} should hold a JSON object of RunConfig fields")
    return values


def open_store(args: argparse.Namespace):
    """The store at --db, else $DIVEBATCH_DB, else .divebatch/runs.db (its folder created).
    A store the user named must be in an existing folder: a mistyped path stores nothing."""
    import os
    from pathlib import Path
    from divebatch.runs.store import RunStore
    named_by = "--db" if getattr(args, "db", None) else \
        "$DIVEBATCH_DB" if os.environ.get("DIVEBATCH_DB") else None
    path = Path(getattr(args, "db", None) or RunStore.default_path()).expanduser()
    folder = path.parent
    instead = ("leave out --db" if named_by == "--db" else "unset DIVEBATCH_DB") \
        + " for .divebatch/runs.db"
    if named_by and folder.exists() and not folder.is_dir():
        raise UsageError(f"{named_by}: {folder} is not a folder ({instead})")
    if named_by and not folder.exists():
        raise UsageError(f"{named_by}: the folder {folder} does not exist (create it first, "
                         f"or {instead})")
    try:
        return RunStore(path)
    except Exception as error:  # sqlite3 errors, permission errors, a non-database file
        raise UsageError(f"{named_by or 'run store'}: cannot open run store {path}: "
                         f"{error}") from None


def get_run_or_fail(store, run_id: int) -> dict:
    run = store.get_run(run_id)
    if run is None:
        raise UsageError(f"run_id should be the id of a stored run, but got run_id={run_id} "
                         f"(see: python -m divebatch list)")
    return run


def format_value(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Plain-text table; `columns` are (key, heading) pairs."""
    cells = [[heading for _, heading in columns]]
    cells += [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def default_config_json() -> str:
    return json.dumps(dataclasses.asdict(RunConfig()), indent=2, sort_keys=True)


def subparser(sub, name: str, help_text: str, handler) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    add_db_flag(parser)
    parser.set_defaults(handler=handler)
    return parser


def check_runnable(config) -> None:
    """Device and dataset problems are bad input: report them before storing the run."""
    from divebatch.training import runnable  # imports torch: only when a command runs
    try:
        runnable.check_runnable(config)
    except ValueError as error:
        raise UsageError(str(error)) from None


def check_data_flags_apply(args, config) -> None:
    """A data flag typed for a problem that ignores it is refused rather than silently unused
    (digits always has its 1797 images; only synthetic problems have a dimension or noise)."""
    from divebatch.config import IMAGE_DATASETS, SYNTHETIC_DEFAULTS
    used_by = {"n_samples": (*SYNTHETIC_DEFAULTS, *IMAGE_DATASETS),
               "dim": tuple(SYNTHETIC_DEFAULTS), "noise": tuple(SYNTHETIC_DEFAULTS)}
    for name, problems in used_by.items():
        if hasattr(args, name) and config.problem not in problems:
            raise UsageError(f"{flag_name(name)} is not used by problem {config.problem} (only "
                             f"by {', '.join(problems)}); leave it out")
