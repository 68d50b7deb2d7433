"""The per-epoch series the charts draw: x positions, smoothing and the diversity readings.

Per-epoch settings (batch size, learning rate) are drawn from the start of the epoch that
used them; measured values (losses, accuracy, diversity) sit at the end of their epoch.

>>> records = [{"epoch": 1, "samples_seen": 100, "step": 10, "train_time": 0.5},
...            {"epoch": 2, "samples_seen": 200, "step": 15, "train_time": 0.25}]
>>> epoch_ends(records, "train_time"), epoch_starts(records, "samples_seen")
([0.5, 0.75], [0, 100])
>>> [round(v, 3) if v else v for v in ema([1.0, None, 3.0], 0.5)]
[1.0, None, 2.333]
"""

from __future__ import annotations

import math

X_AXES = {"samples_seen": "examples seen", "step": "optimizer steps", "epoch": "epochs",
          "train_time": "training time (s)"}


def finite(value) -> float | None:
    """The value as a float, or None when it is missing, NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def ema(values: list, smoothing: float) -> list[float | None]:
    """Debiased exponential moving average (as TensorBoard): s_t = a s_{t-1} + (1-a) x_t,
    divided by 1 - a^t. Missing or non-finite values stay None and are skipped."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing should be a float in [0, 1), but got smoothing={smoothing!r}")
    if smoothing == 0.0:  # the default: the values themselves
        return [finite(value) for value in values]
    out, total, weight = [], 0.0, 0.0
    for value in values:
        value = finite(value)
        if value is None:
            out.append(None)
            continue
        total = smoothing * total + (1.0 - smoothing) * value
        weight = smoothing * weight + (1.0 - smoothing)
        out.append(total / weight)
    return out


def epoch_ends(records: list[dict], axis: str) -> list[float]:
    """x of the end of each record's epoch; "train_time" is cumulative training seconds."""
    if axis == "train_time":
        ends, elapsed = [], 0.0
        for record in records:
            elapsed += float(record.get("train_time") or 0.0)
            ends.append(elapsed)
        return ends
    if axis not in X_AXES:
        raise ValueError(f"axis should be one of {', '.join(X_AXES)}, but got axis={axis!r}")
    return [record[axis] for record in records]


def epoch_starts(records: list[dict], axis: str) -> list[float]:
    """x of the start of each record's epoch (the previous epoch's end, 0 for the first)."""
    return [0, *epoch_ends(records, axis)[:-1]] if records else []


def diversity_values(records: list[dict], n_train: int | None, view: str) -> list:
    """Delta_hat per epoch, or n * Delta_hat (Yin's bound), or n * Delta_hat - 1 (the noise
    scale B_simple); None where unmeasured, or where n is unknown for the scaled views.
    The chart-only probe's value (divebatch.training.probe) where the run has one, else the diversity
    the method measured while training."""
    raw = [finite(r.get("probe_diversity")) if r.get("probe_diversity") is not None
           else finite(r.get("diversity")) for r in records]
    if view == "diversity":
        return raw
    if not n_train:
        return [None] * len(raw)
    offset = 1.0 if view == "noise_scale" else 0.0
    return [None if d is None else n_train * d - offset for d in raw]


def proposals(records: list[dict], n_train: int | None) -> list:
    """DiveBatch's proposal delta * n * Delta_hat per epoch (before the clamp to
    [B_old, B_max]), with the delta in force in that epoch."""
    return [None if not n_train or finite(r.get("diversity")) is None or r.get("delta") is None
            else r["delta"] * n_train * r["diversity"] for r in records]
