"""divebatch.report.batch_axis: the batch-size chart's fixed y range and the proposals off it."""

import doctest
import math

import numpy as np
import pytest

from divebatch.report import batch_axis
from divebatch.report.figures import RunData


def test_the_examples_hold():
    assert doctest.testmod(batch_axis).failed == 0


def test_the_range_is_the_batch_sizes_and_b_max_with_headroom_the_same_on_both_sides():
    axis = batch_axis.fit([np.array([8.0, 64.0, np.nan])], [2048.0], log=True)
    low, high = axis.ends
    headroom = batch_axis.HEADROOM * math.log10(2048 / 8)  # decades
    assert math.log10(8 / low) == pytest.approx(headroom) == math.log10(high / 2048)
    assert 2048 < axis.edge("above") < high and low < axis.edge("below") < 8
    linear = batch_axis.fit([np.array([100.0, 200.0])], [], log=False)
    assert linear.range == [-30.0, 230.0]  # from 0
    flat = batch_axis.fit([np.array([32.0, 32.0])], [], log=True)
    assert flat.ends[0] < 32 < flat.ends[1]  # one value: the minimum headroom
    assert batch_axis.fit([np.array([np.nan])], [2048.0], log=True) is None


def test_nothing_is_off_an_axis_never_fitted_and_zero_is_below_a_log_axis():
    [(side, values)] = batch_axis.split(None, [1.0, 1e9])
    assert side == "inside" and values.tolist() == [1.0, 1e9]
    axis = batch_axis.fit([np.array([8.0, 64.0])], [], log=True)
    sides = dict(axis.split(np.array([0.0, np.nan, 16.0])))
    assert set(sides) == {"inside", "below"} and sides["below"][0] == 0.0
    assert np.isnan(sides["inside"][:2]).all() and sides["inside"][2] == 16.0


def test_b_max_counts_for_adaptive_runs_with_every_value_a_hot_change_set():
    def data(method, caps):
        return RunData({"config": {"method": method, "max_batch_size": 2048}},
                       [{"max_batch_size": cap} for cap in caps])
    assert batch_axis.caps([data("divebatch", [2048, 512, 0, None])]) == [2048.0, 2048.0,
                                                                           512.0]
    assert batch_axis.caps([data("sgd", [2048])]) == []
