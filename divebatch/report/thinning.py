"""Thin a long trace to about `max_points` points for drawing, keeping what the eye needs.

A chart is a few hundred pixels wide: 5,000 epochs drawn as 5,000 points cost the server and
every browser work that no one can see. `thin_indices` keeps, per bucket of neighbouring
points, the lowest and the highest value (so spikes survive), plus the first and last point
and every index the caller names (batch-size changes, hot changes).

A bucket's width is a power of two, so a trace that grows by a point keeps the points it
had chosen, except in its last bucket, until the width doubles: a live chart in the
browser then appends or replaces a few points at the end instead of moving points all along
the line (dashboard/growing.py sends only what changed).

>>> thin_indices([1.0, 5.0, 2.0, 2.0, 9.0, 0.0, 3.0], max_points=6)  # 2 buckets of 4
[0, 1, 4, 5, 6]
>>> thin_indices([8, 8, 8, 16, 16, 16], max_points=2, keep=change_points([8, 8, 8, 16, 16, 16]))
[0, 2, 3, 5]
"""

from __future__ import annotations

import math

import numpy as np

MAX_POINTS = 500  # per trace: more than a chart's width in pixels at the dashboard's size


def change_points(values) -> list[int]:
    """Indices i-1 and i wherever values[i] differs from values[i-1] (a step's both ends;
    None or NaN = missing, and two missing values in a row are no change)."""
    y = np.array(values, dtype=float)  # (n,)
    before, after = y[:-1], y[1:]
    changed = ~((before == after) | (np.isnan(before) & np.isnan(after)))
    ends = np.flatnonzero(changed)
    return np.stack([ends, ends + 1], axis=1).ravel().tolist()


def thin_indices(values, max_points: int = MAX_POINTS, keep=()) -> list[int]:
    """Sorted indices into `values` (None or NaN = missing) to draw, about max_points of them
    plus every index in `keep`; all of them when there are max_points or fewer."""
    if max_points < 2:
        raise ValueError(f"max_points should be an int >= 2, but got max_points={max_points!r}")
    n = len(values)
    if n <= max_points:
        return list(range(n))
    y = np.array(values, dtype=float)  # (n,)
    buckets = max(max_points // 2 - 1, 1)  # at most; two points per bucket, plus the ends
    width = 1 << math.ceil(math.log2(n / buckets))
    buckets = math.ceil(n / width)
    grid = np.full(buckets * width, math.nan)
    grid[:n] = y
    grid = grid.reshape(buckets, width)  # (buckets, width); the last bucket NaN-padded
    missing = np.isnan(grid)
    starts = np.arange(buckets) * width
    lows = starts + np.where(missing, np.inf, grid).argmin(axis=1)
    highs = starts + np.where(missing, -np.inf, grid).argmax(axis=1)
    keep = np.asarray(keep, dtype=int)
    chosen = np.concatenate([[0, n - 1], keep[(keep >= 0) & (keep < n)], lows, highs])
    return np.unique(chosen[chosen < n]).tolist()
