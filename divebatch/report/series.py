"""The per-epoch series the charts draw: x positions, smoothing and the diversity readings.

A run's records become float columns once (`Columns`: NaN where a value is missing or not
finite), and every series is numpy arithmetic on them: a chart panel of 4 runs of 600 epochs
then costs milliseconds, where a Python pass over the records per series cost tens.

Per-epoch settings (batch size, learning rate) are drawn from the start of the epoch that
used them; measured values (losses, accuracy, diversity) sit at the end of their epoch.

>>> columns = Columns([{"epoch": 1, "samples_seen": 100, "step": 10, "train_time": 0.5},
...                    {"epoch": 2, "samples_seen": 200, "step": 15, "train_time": 0.25}])
>>> epoch_ends(columns, "train_time").tolist(), epoch_starts(columns, "samples_seen").tolist()
([0.5, 0.75], [0.0, 100.0])
>>> [round(v, 3) for v in ema([1.0, None, 3.0], 0.5).tolist()]
[1.0, nan, 2.333]
"""

from __future__ import annotations

import numpy as np

X_AXES = {"samples_seen": "examples seen", "step": "optimizer steps", "epoch": "epochs",
          "train_time": "training time (s)"}


class Columns:
    """A run's records (dicts, by epoch) as float columns, each made on first use."""

    def __init__(self, records):
        self.records = records
        self._made: dict[str, np.ndarray] = {}
        self._present: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> np.ndarray:
        """The key's values, shape (len,); NaN where missing, NaN or infinite."""
        if key not in self._made:
            values = np.array([record.get(key) for record in self.records], dtype=float)
            values[~np.isfinite(values)] = np.nan
            self._made[key] = values
        return self._made[key]

    def present(self, key: str) -> np.ndarray:
        """Where the records hold a value for the key (NaN included), shape (len,) bool."""
        if key not in self._present:
            self._present[key] = np.array([record.get(key) is not None
                                           for record in self.records], dtype=bool)
        return self._present[key]

    def grown(self, records) -> Columns:
        """Columns of `records`, which start with this one's records: the columns made so far
        are extended by the new records alone (a live run's next epochs)."""
        new, tail = Columns(records), Columns(records[len(self):])
        made, present = dict(self._made), dict(self._present)  # copies: others may add keys
        new._made = {key: np.concatenate([column, tail[key]]) for key, column in made.items()}
        new._present = {key: np.concatenate([column, tail.present(key)])
                        for key, column in present.items()}
        return new

    def extends(self, records) -> bool:
        """Whether `records` are this one's records (the same dicts) plus later ones."""
        n = len(self.records)
        return len(records) >= n and (n == 0 or records[n - 1] is self.records[-1])

    def after(self, first: dict) -> Columns:
        """Columns of [first, *records] (a run's measured starting point, then its epochs),
        each made from this one's column and the first record."""
        return _Joined(Columns([first]), self)


class _Joined(Columns):
    """Columns of two parts' records, one after the other."""

    def __init__(self, head: Columns, tail: Columns):
        super().__init__([*head.records, *tail.records])
        self._head, self._tail = head, tail

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._made:
            self._made[key] = np.concatenate([self._head[key], self._tail[key]])
        return self._made[key]

    def present(self, key: str) -> np.ndarray:
        if key not in self._present:
            self._present[key] = np.concatenate([self._head.present(key),
                                                 self._tail.present(key)])
        return self._present[key]


def ema(values, smoothing: float) -> np.ndarray:
    """Debiased exponential moving average (as TensorBoard): s_t = a s_{t-1} + (1-a) x_t,
    divided by 1 - a^t. Missing or non-finite values (None, NaN, inf) stay NaN and are
    skipped."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing should be a float in [0, 1), but got smoothing={smoothing!r}")
    out = np.array(values, dtype=float)
    out[~np.isfinite(out)] = np.nan
    if smoothing == 0.0:  # the default: the values themselves
        return out
    seen = np.flatnonzero(~np.isnan(out))
    total = weight = 0.0
    for index, value in zip(seen.tolist(), out[seen].tolist()):  # a recurrence: one pass
        total = smoothing * total + (1.0 - smoothing) * value
        weight = smoothing * weight + (1.0 - smoothing)
        out[index] = total / weight
    return out


def epoch_ends(columns: Columns, axis: str) -> np.ndarray:
    """x of the end of each record's epoch; "train_time" is cumulative training seconds."""
    if axis not in X_AXES:
        raise ValueError(f"axis should be one of {', '.join(X_AXES)}, but got axis={axis!r}")
    if axis == "train_time":
        return np.cumsum(np.nan_to_num(columns["train_time"]))
    return columns[axis]


def epoch_starts(columns: Columns, axis: str) -> np.ndarray:
    """x of the start of each record's epoch (the previous epoch's end, 0 for the first)."""
    ends = epoch_ends(columns, axis)
    return np.concatenate([[0.0], ends[:-1]]) if len(ends) else ends


def diversity_values(columns: Columns, n_train: int | None, view: str) -> np.ndarray:
    """Delta_hat per epoch, or n * Delta_hat (Yin's bound), or n * Delta_hat - 1 (the noise
    scale B_simple); NaN where unmeasured, or where n is unknown for the scaled views.
    The chart-only probe's value (divebatch.training.probe) where the run has one, else the
    diversity the method measured while training."""
    raw = np.where(columns.present("probe_diversity"), columns["probe_diversity"],
                   columns["diversity"])
    if view == "diversity":
        return raw
    if not n_train:
        return np.full(len(raw), np.nan)
    return n_train * raw - (1.0 if view == "noise_scale" else 0.0)


def proposals(columns: Columns, n_train: int | None) -> np.ndarray:
    """DiveBatch's proposal delta * n * Delta_hat per epoch (before the clamp to
    [B_old, B_max]), with the delta in force in that epoch; NaN where one is missing."""
    if not n_train:
        return np.full(len(columns), np.nan)
    return columns["delta"] * n_train * columns["diversity"]


def effective_lr(columns: Columns) -> np.ndarray:
    """LR / B per epoch, shape (epochs,): SGD's noise temperature, the step size per example.
    A batch doubled with the LR kept halves it, as halving the LR would (Meterez et al.,
    "Seesaw", arXiv 2510.14717). NaN where either is missing or B is not positive.

    >>> effective_lr(Columns([{"lr": 0.1, "batch_size": 16}, {"lr": 0.1, "batch_size": 32},
    ...                       {"lr": 0.1, "batch_size": 0}])).tolist()
    [0.00625, 0.003125, nan]
    """
    batch = columns["batch_size"]
    positive = np.where(batch > 0, batch, np.nan)
    return columns["lr"] / positive
