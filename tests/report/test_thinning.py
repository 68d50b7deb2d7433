"""divebatch.report.thinning: at most about max_points indices, spikes and named indices kept."""

import doctest
import random

import pytest

from divebatch.report import chart_style, hot_limits, thinning


def test_short_traces_are_kept_whole():
    assert thinning.thin_indices([3, None, 1], max_points=5) == [0, 1, 2]


def test_long_trace_keeps_its_ends_extremes_and_named_indices():
    rng = random.Random(0)
    values = [rng.random() for _ in range(10_000)]
    values[4321], values[8765] = 5.0, -5.0
    values[100:200] = [None] * 100  # a gap (unmeasured epochs)
    kept = thinning.thin_indices(values, max_points=200, keep=[7, 9_999, 50_000])
    assert len(kept) <= 203 and kept == sorted(set(kept))
    assert {0, 7, 4321, 8765, 9_999} <= set(kept)


def test_a_growing_trace_keeps_its_points_but_the_last_buckets():
    """What a live chart relies on to append: one more point changes only the points chosen
    in the last bucket (or every point, when the bucket width doubles: at most log2 times)."""
    rng = random.Random(1)
    values = [rng.random() for _ in range(3_000)]
    moved = 0
    for n in range(201, 3_000):
        before, after = (thinning.thin_indices(values[:m], max_points=100) for m in (n, n + 1))
        assert len(after) <= 100
        shared = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b),
                      len(before))
        if shared < len(before) - 3:
            moved += 1  # the width doubled: 256, 512, 1024, 2048 points per 49 buckets
    assert moved <= 4


def test_change_points_are_both_ends_of_each_step():
    assert thinning.change_points([1, 1, 2, 2, 2, 4]) == [1, 2, 4, 5]


def test_too_few_points_are_refused():
    with pytest.raises(ValueError, match="max_points should be an int >= 2"):
        thinning.thin_indices([1, 2, 3], max_points=1)


def test_doctests():
    assert doctest.testmod(thinning).failed == 0
    assert doctest.testmod(chart_style).failed == 0
    assert doctest.testmod(hot_limits, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
