"""McCandlish's fit, the crossing of a loss curve and the noise scale, against values written
out by hand."""

import math

import pytest

from divebatch.experiments.critical_fit import (batch_size_grid, fit_critical_batch,
                                                noise_scale, steps_to_target)


def test_the_fit_recovers_the_model_it_was_written_from():
    sizes = [4, 8, 16, 32, 64, 128, 256]
    steps = [50.0 * (1 + 40.0 / b) for b in sizes]  # S_min 50, B_crit 40
    fit = fit_critical_batch(sizes, steps)
    assert fit.critical_batch == pytest.approx(40.0)
    assert fit.min_steps == pytest.approx(50.0) and fit.min_examples == pytest.approx(2000.0)
    assert fit.bound == "inside" and fit.relative_residual == pytest.approx(0.0, abs=1e-12)


def test_steps_that_fall_as_one_over_b_put_the_critical_batch_above_the_range():
    fit = fit_critical_batch([8, 16, 32], [800.0, 400.0, 200.0])  # E constant: S_min = 0
    assert fit.min_steps == 0.0 and math.isinf(fit.critical_batch) and fit.bound == "above"


def test_flat_steps_put_the_critical_batch_below_the_range():
    fit = fit_critical_batch([8, 16, 32, 64], [30.0, 30.0, 30.0, 30.0])
    assert fit.critical_batch == 0.0 and fit.bound == "below"


def test_branches_that_never_reach_are_left_out_and_two_are_needed():
    assert fit_critical_batch([8, 16, 32], [None, 10.0, None]) is None
    fit = fit_critical_batch([8, 16, 32], [None, 30.0, 20.0])  # 10 + 320 / B
    assert fit.points == 2 and fit.critical_batch == pytest.approx(32.0)


def test_crossing_is_interpolated_between_evaluations():
    curve = [(0, 1.0), (4, 0.8), (8, 0.4), (12, 0.1)]
    assert steps_to_target(curve, 0.6) == pytest.approx(6.0)
    assert steps_to_target(curve, 0.05) is None
    assert steps_to_target([(0, 1.0), (3, 0.5)], 1.0) == 0.0


def test_grid_and_noise_scale():
    assert batch_size_grid(8, 8) == [8]
    assert batch_size_grid(3, 20) == [3, 6, 12, 20]
    assert noise_scale(100, 0.26) == pytest.approx(25.0)
