"""RunConfig: every knob of one run, with a default and a range per field.

The CLI flags, the dashboard widgets and the stored run are all generated from the field
metadata here, so a knob is added in exactly one place.

>>> cfg = RunConfig(problem="digits", method="divebatch", epochs=5)
>>> cfg.validate()
>>> RunConfig(epochs=0).validate()
Traceback (most recent call last):
...
ValueError: epochs should be an int >= 1 and <= 100000, but got epochs=0
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IMAGE_DATASETS = ("cifar10", "cifar100", "tiny_imagenet")
PROBLEMS = ("least_squares", "logistic", "sine", "classification", "digits", *IMAGE_DATASETS)
MODELS = ("auto", "linear", "mlp", "cnn", "resnet18")
METHODS = ("sgd", "adabatch", "divebatch")
LR_SCALINGS = ("none", "linear", "sqrt")
SCHEDULES = ("constant", "cosine", "step")
DEVICES = ("auto", "cpu", "cuda", "mps")
NORMS = ("group", "batch")

# Each problem's model when `model="auto"`, and the models that fit it.
DEFAULT_MODEL = {"least_squares": "linear", "logistic": "linear", "sine": "mlp",
                 "classification": "mlp", "digits": "cnn", "cifar10": "resnet18",
                 "cifar100": "resnet18", "tiny_imagenet": "resnet18"}
ALLOWED_MODELS = {"least_squares": ("linear", "mlp"), "logistic": ("linear", "mlp"),
                  "sine": ("mlp",), "classification": ("linear", "mlp"),
                  "digits": ("linear", "mlp", "cnn"),
                  "cifar10": ("cnn", "resnet18"), "cifar100": ("cnn", "resnet18"),
                  "tiny_imagenet": ("cnn", "resnet18")}

# (default n_samples, default dim) of each synthetic problem.
SYNTHETIC_DEFAULTS = {"least_squares": (10_000, 400), "logistic": (20_000, 512),
                      "sine": (4_000, 20), "classification": (8_000, 20)}
MAX_SYNTHETIC_VALUES = 200_000_000  # n_samples * dim: 800 MB of float32 inputs
MAX_TEXT = 4096  # characters in a text field (name, data_dir)

# Knobs a running run accepts between epochs (the rest need a new run).
HOT_FIELDS = ("delta", "max_batch_size", "resize_every", "lr_multiplier")
PACE_FIELDS = ("pace_s",)  # the classroom pace, changed while a run trains by its own control
# The fields only some methods read; every other field is read by every method.
METHOD_FIELDS = {"divebatch": ("delta", "min_batch_size", "max_batch_size", "resize_every"),
                 "adabatch": ("max_batch_size", "resize_every", "adabatch_factor",
                              "adabatch_lr_decay"),
                 "sgd": ()}


def method_uses(method: str, name: str) -> bool:
    """Whether a run of `method` reads the RunConfig field `name` (the forms grey out the rest)."""
    specific = {field for fields in METHOD_FIELDS.values() for field in fields}
    return name not in specific or name in METHOD_FIELDS[method]


def knob(default: Any, help: str, *, choices: tuple = (), low: float | None = None,
         high: float | None = None, low_open: bool = False, high_open: bool = False,
         group: str = "advanced") -> Any:
    """A dataclass field carrying its help text and allowed range as metadata."""
    meta = {"help": help, "choices": choices, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open, "group": group}
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    # --- what to train
    name: str = knob("", "label shown in run lists (optional)", group="basic")
    problem: str = knob("least_squares", "dataset / task", choices=PROBLEMS, group="basic")
    model: str = knob("auto", "network; auto picks the problem's default", choices=MODELS,
                      group="basic")
    n_samples: int = knob(0, "synthetic problems: samples before the split (0 = problem "
                             "default); image problems: cap on training images (0 = all)",
                          low=0, high=10_000_000)
    dim: int = knob(0, "synthetic problems: input dimension (0 = problem default)",
                    low=0, high=100_000)
    noise: float = knob(0.1, "synthetic problems: label noise level", low=0.0, high=10.0)
    val_fraction: float = knob(0.2, "synthetic problems and digits: held-out fraction",
                               low=0.0, high=0.9, low_open=True)
    hidden: int = knob(128, "MLP hidden width", low=1, high=65_536)
    norm: str = knob("group", "normalisation in CNN/ResNet (batch makes diversity "
                              "approximate)", choices=NORMS)
    augment: bool = knob(True, "image problems: random crop + flip on the device")
    # --- the batch-size method
    method: str = knob("divebatch", "batch-size method", choices=METHODS, group="basic")
    epochs: int = knob(20, "training epochs", low=1, high=100_000, group="basic")
    batch_size: int = knob(32, "initial batch size B0", low=1, high=1_000_000, group="basic")
    max_batch_size: int = knob(1024, "largest batch size B_max (>= batch_size; SGD: follows a "
                                     "larger batch_size when not given)", low=1,
                               high=1_000_000, group="basic")
    min_batch_size: int = knob(0, "DiveBatch non-monotone floor (0 = paper's monotone rule)",
                               low=0, high=1_000_000)
    delta: float = knob(0.1, "DiveBatch: fraction of Yin's bound n*Delta", low=0.0,
                        high=1e6, low_open=True, group="basic")
    resize_every: int = knob(1, "epochs between batch-size updates R", low=1, high=100_000,
                             group="basic")
    adabatch_factor: int = knob(2, "AdaBatch: batch growth factor per resize", low=2,
                                high=1024)
    adabatch_lr_decay: float = knob(1.0, "AdaBatch: extra LR decay per resize (paper: 0.75)",
                                    low=0.0, high=1.0, low_open=True)
    measure_every: int = knob(0, "measure diversity on every k-th batch (0 = library "
                                 "default, 1 = every batch)", low=0, high=1_000_000)
    diversity_every_epoch: bool = knob(True, "chart every method's diversity: a fixed probe "
                                             "measured after each epoch, outside training "
                                             "time (off: only DiveBatch's own measurement)")
    # --- the optimizer
    lr: float = knob(0.01, "base learning rate", low=0.0, high=100.0, low_open=True,
                     group="basic")
    lr_scaling: str = knob("none", "LR rule on a batch change: none, linear (r), sqrt",
                           choices=LR_SCALINGS, group="basic")
    schedule: str = knob("constant", "base LR schedule per epoch", choices=SCHEDULES,
                         group="basic")
    momentum: float = knob(0.9, "SGD momentum", low=0.0, high=1.0, high_open=True)
    weight_decay: float = knob(0.0, "L2 weight decay in the optimizer", low=0.0, high=1.0)
    lr_multiplier: float = knob(1.0, "hot LR multiplier on top of the schedule", low=0.0,
                                high=1000.0, low_open=True)
    # --- execution
    seed: int = knob(0, "random seed (data, init, shuffling)", low=0, high=2**31 - 1,
                     group="basic")
    device: str = knob("auto", "auto picks cuda, then mps, then cpu", choices=DEVICES,
                       group="basic")
    data_dir: str = knob("", "folder holding datasets (empty: $DIVEBATCH_DATA or data/)")
    amp: bool = knob(False, "CUDA only: bf16 autocast (off: float32 was faster on an H200, "
                            "see divebatch.device_options)")
    channels_last: bool = knob(False, "CUDA only: channels-last memory format")
    compile_forward: bool = knob(False, "torch.compile the model for batches whose diversity "
                                        "is not measured (one process only)")
    progress_every: float = knob(2.0, "seconds between live progress rows within an epoch",
                                 low=0.1, high=3600.0)
    pace_s: float = knob(0.0, "classroom pace: each epoch lasts at least this many seconds "
                              "(the run waits between epochs; waiting is never training "
                              "time and changes no result)", low=0.0, high=3600.0)
    max_micro_batch: int = knob(0, "largest forward/backward per process; a larger share of "
                                   "the batch accumulates gradients over micro-batches "
                                   "(0 = never split)", low=0, high=1_000_000)
    keep_checkpoints: int = knob(4, "checkpoints kept for the critical-batch measurement: "
                                    "the start and k - 1 evenly spaced epochs (0 = none; "
                                    "each is one model + optimizer state on disk)",
                                 low=0, high=1000)
    nproc: int = knob(1, "processes training this run together (DDP; > 1 launches "
                         "torchrun, one process per GPU)", low=1, high=1024)

    def validate(self, name_of: Callable[[str], str] = str) -> None:
        """Raise ValueError listing every bad field, one per line; `name_of` gives each field
        the name its user sees (the CLI's flag, the dashboard's label)."""
        errors = [e for f in dataclasses.fields(self) if (e := _field_error(self, f, name_of))]
        errors += _cross_field_errors(self, name_of)
        if errors:
            raise ValueError("\n".join(errors))

    def resolved_model(self) -> str:
        return DEFAULT_MODEL[self.problem] if self.model == "auto" else self.model

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Build from a dict; unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def kept_checkpoint_epochs(self) -> tuple[int, ...]:
        """Epochs whose checkpoints a stored run keeps: 0 (the start) and every
        (epochs / keep_checkpoints)-th epoch before the last, keep_checkpoints in all at most.

        >>> RunConfig(epochs=20, keep_checkpoints=4).kept_checkpoint_epochs()
        (0, 5, 10, 15)
        """
        k = self.keep_checkpoints
        return tuple(sorted({(j * self.epochs) // k for j in range(k)})) if k else ()


def check_hot_change(config: RunConfig, changes: dict, fields: tuple[str, ...] = HOT_FIELDS,
                     name_of: Callable[[str], str] = str) -> RunConfig:
    """`config` with `changes` made while the run trains, checked: the one check of a hot
    change (or, with `fields=PACE_FIELDS`, of a pace), used where a request is sent and where
    the trainer applies it. ValueError naming the fields that cannot change (not in
    `fields`), or every bad value as `validate` does (fields named by `name_of`).

    >>> check_hot_change(RunConfig(), {"delta": 0.5}).delta
    0.5
    >>> check_hot_change(RunConfig(), {"epochs": 3}, fields=PACE_FIELDS)
    Traceback (most recent call last):
    ...
    ValueError: hot parameters are pace_s, but got epochs
    """
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ValueError(f"hot parameters are {', '.join(fields)}, but got "
                         f"{', '.join(unknown)}")
    changed = config.replace(**changes)
    changed.validate(name_of)
    return changed


def cap_follows_sgd_batch(config: RunConfig, cap_given: bool) -> RunConfig:
    """`config` with B_max raised to its batch size when it is SGD above B_max and the user
    gave no B_max: SGD never reads B_max, so the default 1024 must not refuse
    `--method sgd --batch-size 2048`, and the stored run never claims B_max < its batch size.
    A B_max the user gave is kept, and `validate` refuses it if it is below the batch size.

    >>> cap_follows_sgd_batch(RunConfig(method="sgd", batch_size=2048), False).max_batch_size
    2048
    >>> cap_follows_sgd_batch(RunConfig(method="sgd", batch_size=32), False).max_batch_size
    1024
    """
    batch, cap = config.batch_size, config.max_batch_size
    if cap_given or config.method != "sgd" or not (_type_ok("int", batch)
                                                    and _type_ok("int", cap)) or batch <= cap:
        return config  # a value of the wrong type is left for `validate` to name
    return config.replace(max_batch_size=batch)


def config_fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(RunConfig)


def allowed_range(f: dataclasses.Field) -> str:
    """Human words for a field's allowed values, e.g. 'a float > 0 and <= 100'."""
    meta = f.metadata
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    kind = _kind_name(f)
    if kind == "a string":
        return f"a string of at most {MAX_TEXT} characters, without NUL"
    if kind == "a bool":
        return kind
    parts = []
    if meta["low"] is not None:
        parts.append(f"{'>' if meta['low_open'] else '>='} {_num(meta['low'])}")
    if meta["high"] is not None:
        parts.append(f"{'<' if meta['high_open'] else '<='} {_num(meta['high'])}")
    return f"{kind} " + " and ".join(parts)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _kind_name(f: dataclasses.Field) -> str:
    return {"int": "an int", "float": "a float", "bool": "a bool",
            "str": "a string"}[f.type]


def _field_error(cfg: RunConfig, f: dataclasses.Field,
                 name_of: Callable[[str], str] = str) -> str | None:
    value = getattr(cfg, f.name)
    if not _type_ok(f.type, value) or not _value_ok(f, value):
        return f"{name_of(f.name)} should be {allowed_range(f)}, but got " \
               f"{name_of(f.name)}={short_repr(value)}"
    return None


def short_repr(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters, so a huge bad value still gives a short line."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to write out
        text = f"<an int of {value.bit_length()} bits>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _type_ok(type_name: str, value: Any) -> bool:
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":  # an int is a float value (and may be too large to convert)
        return (isinstance(value, int) and not isinstance(value, bool)) \
            or (isinstance(value, float) and math.isfinite(value))
    return isinstance(value, str)


def _value_ok(f: dataclasses.Field, value: Any) -> bool:
    meta = f.metadata
    if meta["choices"]:
        return value in meta["choices"]
    if f.type == "str":
        return len(value) <= MAX_TEXT and "\x00" not in value
    if f.type == "bool":
        return True
    low, high = meta["low"], meta["high"]
    if low is not None and (value < low or (meta["low_open"] and value == low)):
        return False
    if high is not None and (value > high or (meta["high_open"] and value == high)):
        return False
    return True


def _cross_field_errors(cfg: RunConfig, name_of: Callable[[str], str] = str) -> list[str]:
    """Rules between fields, checked only where those fields are valid on their own."""
    valid = {f.name for f in dataclasses.fields(cfg) if _field_error(cfg, f) is None}
    b0, b_max, b_min = name_of("batch_size"), name_of("max_batch_size"), name_of("min_batch_size")
    errors = []
    if {"batch_size", "max_batch_size"} <= valid and cfg.max_batch_size < cfg.batch_size:
        unread = f" (SGD never reads it: set it to {cfg.batch_size})" if cfg.method == "sgd" else ""
        errors.append(f"{b_max} should be an int >= {b0} ({cfg.batch_size}), "
                      f"but got {b_max}={cfg.max_batch_size}{unread}")
    if {"batch_size", "min_batch_size"} <= valid and cfg.min_batch_size > cfg.batch_size:
        errors.append(f"{b_min} should be an int <= {b0} ({cfg.batch_size}), "
                      f"but got {b_min}={cfg.min_batch_size}")
    if {"problem", "model"} <= valid and cfg.model != "auto" \
            and cfg.model not in ALLOWED_MODELS[cfg.problem]:
        allowed = ", ".join(("auto",) + ALLOWED_MODELS[cfg.problem])
        errors.append(f"{name_of('model')} should be one of {allowed} for {name_of('problem')} "
                      f"{cfg.problem}, but got {name_of('model')}={cfg.model!r}")
    if {"problem", "n_samples", "dim"} <= valid and cfg.problem in SYNTHETIC_DEFAULTS:
        n_default, dim_default = SYNTHETIC_DEFAULTS[cfg.problem]
        values = (cfg.n_samples or n_default) * (cfg.dim or dim_default)
        n, dim = name_of("n_samples"), name_of("dim")
        if values > MAX_SYNTHETIC_VALUES:
            errors.append(f"{n} * {dim} should be <= {MAX_SYNTHETIC_VALUES} for a "
                          f"synthetic problem (800 MB of inputs), but got {n}="
                          f"{cfg.n_samples}, {dim}={cfg.dim} ({values} values)")
    return errors
