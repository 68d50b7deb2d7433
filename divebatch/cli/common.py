"""What every command group shares: the parser class, the --db and config flags, UsageError,
opening the store, plain-text tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

from divebatch.config import (RunConfig, allowed_range, cap_follows_sgd_batch, config_fields,
                              short_repr)

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
    """RunConfig from `--preset`, `--config FILE` and flags; raises UsageError listing bad
    fields, each named as the user gave it (a flag, a key of the file, the preset's field).
    SGD's B_max follows a larger batch size unless the file or a flag gives it (a preset's
    B_max is a default, like RunConfig's)."""
    preset = getattr(args, "preset", None)
    values = preset_fields(preset) if preset is not None else {}
    given = read_config_file(args.config) if hasattr(args, "config") else {}
    given.update(typed_fields(args))
    values.update(given)
    name_of = names_as_given(args)
    check_preset_model(values, preset, name_of)
    try:
        config = cap_follows_sgd_batch(RunConfig.from_dict(values),
                                       cap_given="max_batch_size" in given)
        config.validate(name_of=name_of)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error).replace("\n", "; ")) from None
    return config


def typed_fields(args: argparse.Namespace) -> dict:
    """The RunConfig fields the user typed as flags (unset flags are absent from `args`)."""
    return {f.name: getattr(args, f.name) for f in config_fields() if hasattr(args, f.name)}


def names_as_given(args: argparse.Namespace):
    """name_of(field) as the user gave the field: its flag, its key in the config file, or
    the preset's field (a value the user never typed is not blamed on a flag)."""
    from_file = read_config_file(args.config) if hasattr(args, "config") else {}
    typed = typed_fields(args)
    preset = getattr(args, "preset", None)
    preset_only = set(preset_fields(preset)) - set(from_file) - set(typed) if preset else set()

    def name_of(field_name: str) -> str:
        if field_name in preset_only:
            return f"the preset {preset}'s {field_name}"
        return field_name if field_name in set(from_file) - set(typed) else flag_name(field_name)
    return name_of


def check_preset_model(values: dict, preset: str | None, name_of) -> None:
    """A preset's model that does not fit the problem the user chose instead of the preset's
    is refused in the user's terms: `--preset digits_race --problem sine` names the preset."""
    from divebatch.config import ALLOWED_MODELS
    model, problem = values.get("model", "auto"), values.get("problem")
    if preset is None or not name_of("model").startswith("the preset") \
            or model == "auto" or problem not in ALLOWED_MODELS \
            or model in ALLOWED_MODELS[problem]:
        return
    raise UsageError(f"the preset {preset}'s model {model} does not fit {name_of('problem')} "
                     f"{problem}: add --model auto (or one of "
                     f"{', '.join(ALLOWED_MODELS[problem])})")


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


def open_store(args: argparse.Namespace, writes: bool = True):
    """The store at --db, else $DIVEBATCH_DB, else .divebatch/runs.db (its folder created).
    A store the user named must be in an existing folder: a mistyped path stores nothing.
    A store this process cannot write (a read-only file system, no permission) is opened
    read-only for the commands that only read it (`writes=False`); the others refuse it."""
    import os
    from pathlib import Path
    from divebatch.runs.store import RunStore
    if hasattr(args, "db") and not args.db.strip():  # "" would silently mean the default
        raise UsageError(f"--db should be the path of a run store file, but got "
                         f"--db={args.db!r} (leave out --db for .divebatch/runs.db)")
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
        store = RunStore(path)
    except Exception as error:  # sqlite3 errors, permission errors, a non-database file
        raise UsageError(f"{named_by or 'run store'}: cannot open run store {path}: "
                         f"{error}") from None
    if writes and store.read_only:
        raise UsageError(f"{named_by or 'run store'}: the run store {store.path} is read-only "
                         f"(its file or folder cannot be written); list, show, export and "
                         f"compare can read it")
    return store


def reap_if_writable(store) -> None:
    """Mark runs whose worker died as interrupted, unless the store is read-only (then they
    are shown as stored)."""
    from divebatch.runs.queue import reap
    if not store.read_only:
        reap(store)


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


def check_runnable(config, args: argparse.Namespace) -> None:
    """Device and dataset problems are bad input: report them before storing the run, the
    field named as the user gave it (see `names_as_given`)."""
    import re
    from divebatch.training import runnable  # imports torch: only when a command runs
    try:
        runnable.check_runnable(config)
    except ValueError as error:  # "device should be ..., but got device='cuda'"
        message = re.sub(r"\bdevice(?= should|=)", names_as_given(args)("device"), str(error))
        raise UsageError(message) from None


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


def check_method_flags_apply(args, config) -> None:
    """A method flag typed for a method that ignores it (`--method sgd --delta 0.5`) is
    refused like a data flag (config.METHOD_FIELDS says which method reads which field); a
    preset's or config file's value is left alone. SGD takes --max-batch-size only as its
    batch size (SGD at B_max: `--batch-size B --max-batch-size B`)."""
    from divebatch.config import METHOD_FIELDS, method_uses
    for name in sorted({name for fields in METHOD_FIELDS.values() for name in fields}):
        sgd_at_b_max = name == "max_batch_size" and config.method == "sgd" \
            and config.max_batch_size == config.batch_size
        if hasattr(args, name) and not method_uses(config.method, name) and not sgd_at_b_max:
            users = [method for method, fields in METHOD_FIELDS.items() if name in fields]
            raise UsageError(f"{flag_name(name)} is not used by method {config.method} (only "
                             f"by {', '.join(users)}"
                             + ("; SGD at B_max: --batch-size B --max-batch-size B"
                                if name == "max_batch_size" and config.method == "sgd" else "")
                             + "); leave it out")
