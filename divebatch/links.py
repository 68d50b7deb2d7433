"""A RunConfig as URL query parameters, so that a link reproduces a setup.

Only fields that differ from the defaults are written. `config_from_query` reads all or
nothing: every parameter is parsed by its field's type, then `RunConfig.from_dict` (an SGD
link's B_max following its batch size unless the link sets it) and
`validate()` run; any problem raises one ValueError listing every bad parameter.
`read_query` keeps what it can: the good parameters, and why each bad one was left out.

>>> query = config_to_query(RunConfig(problem="sine", delta=0.25, seed=7))
>>> query
{'problem': 'sine', 'delta': '0.25', 'seed': '7'}
>>> config_from_query(query) == RunConfig(problem="sine", delta=0.25, seed=7)
True
>>> config_from_query({"epochs": "ten"})
Traceback (most recent call last):
...
ValueError: epochs should be an int, but got epochs='ten'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from divebatch.config import RunConfig, cap_follows_sgd_batch, config_fields

TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def config_to_query(config: RunConfig) -> dict[str, str]:
    """{field: text} for the fields where `config` differs from RunConfig()."""
    defaults = RunConfig()
    return {f.name: _text(getattr(config, f.name)) for f in config_fields()
            if getattr(config, f.name) != getattr(defaults, f.name)}


def config_from_query(query: Mapping[str, str], ignore: Iterable[str] = ()) -> RunConfig:
    """The validated RunConfig that `query` describes (missing fields take defaults).

    Keys in `ignore` (e.g. "instructor") are skipped; any other unknown key is an error.
    """
    types = {f.name: f.type for f in config_fields()}
    skipped = set(ignore)
    values, errors = {}, []
    for key, text in query.items():
        if key in skipped:
            continue
        if key not in types:
            errors.append(f"{key} is not a setting (unknown query parameter {key}={text!r})")
            continue
        try:
            values[key] = _parse(types[key], text)
        except ValueError:
            errors.append(f"{key} should be {_A[types[key]]}, but got {key}={text!r}")
    if errors:
        raise ValueError("\n".join(errors))
    config = _config(values)
    config.validate()
    return config


def read_query(query: Mapping[str, str], ignore: Iterable[str] = (),
               name_of: Callable[[str], str] = str) -> tuple[RunConfig, dict[str, str]]:
    """The valid RunConfig made of the good parameters of `query`, and {parameter: why it
    was left out} for the others ("should be a number, but got 'ten'"), without the
    parameter's name so that a page can put its own label in front. `name_of` names the
    other fields a reason mentions (a page's labels); one the link does not set is "the
    default" one, which is what a link leaves unset."""
    types = {f.name: f.type for f in config_fields()}
    values, refused = {}, {}
    for key, text in query.items():
        if key in set(ignore):
            continue
        if key not in types:
            refused[key] = f"is not a setting (got {text!r})"
            continue
        try:
            values[key] = _parse(types[key], text)
        except ValueError:
            refused[key] = f"should be {_A[types[key]]}, but got {text!r}"
    while True:  # drop the fields that validation names, until the rest is valid
        try:
            config = _config(values)
            config.validate()
            return config, refused
        except ValueError as error:
            raw = str(error).splitlines()
            shown = _errors(values, lambda n: name_of(n) if n in values
                            else f"the default {name_of(n)}")
            named = _fields_named(list(zip(raw, shown)), values, name_of) or _conflicting(
                (raw[0], _errors(values, name_of)[0]), values)
            if not named:
                raise
            for key, why in named.items():
                refused[key] = why
                del values[key]


def _config(values: dict) -> RunConfig:
    """The RunConfig of a link's `values`: missing fields take defaults, and an SGD link's
    B_max follows its batch size unless the link sets it (`cap_follows_sgd_batch`)."""
    return cap_follows_sgd_batch(RunConfig.from_dict(values),
                                 cap_given="max_batch_size" in values)


def _errors(values: dict, name_of: Callable[[str], str]) -> list[str]:
    """The lines of validate()'s error for `values`, fields named by `name_of`."""
    try:
        _config(values).validate(name_of)
    except ValueError as error:
        return str(error).splitlines()
    return []


def _conflicting(line: tuple[str, str], values: dict) -> dict[str, str]:
    """{field of `values`: why} for an error line, (as validate words it, as shown), that
    names no field of `values` (batch_size=4096 in a link against the default
    max_batch_size=1024): the link's field whose removal makes that error go away."""
    raw, shown = line
    for key in values:
        try:
            _config({k: v for k, v in values.items() if k != key}).validate()
        except ValueError as error:
            if raw in str(error).splitlines():
                continue
        return {key: f"conflicts with a default: {shown}"}
    return {}


def _fields_named(lines: list[tuple[str, str]], values: dict,
                  name_of: Callable[[str], str]) -> dict[str, str]:
    """{field: its error without the field's name} for the error lines about `values`;
    `lines`: (as validate words it, as shown)."""
    named = {}
    for raw, shown in lines:
        key = raw.split(" ", 1)[0]
        if key in values and key not in named:
            name = name_of(key)
            named[key] = shown[len(name):].strip().replace(f"{name}=", "")
    return named


_A = {"int": "an int", "float": "a number", "bool": "true or false", "str": "text"}


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)  # repr: exact round trip


def _parse(type_name: str, text: str):
    if type_name == "bool":
        word = text.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(text)
    if type_name == "int":
        return int(text.strip())  # "1.5" and "ten" raise ValueError
    if type_name == "float":
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    return text
