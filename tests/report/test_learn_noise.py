"""divebatch.report.learn_noise: B_simple and the critical batch size B_noise on the Learn
page's quadratic, against values worked out by hand and one SGD step over every batch."""

import doctest
import itertools

import numpy as np
import pytest

from divebatch.report import learn_noise
from divebatch.report.learn import ToyProblem, mean_loss, per_sample_gradients, toy_problem

# x_i = (1, 0), (0, 1), (0, 1) and y = (1, 1, -1): at w = 0, g = (-1, 0), (0, -1), (0, 1), so
# G = (-1/3, 0), Sigma = diag(2/9, 2/3), H = diag(1/3, 2/3), G^T H G = 1/27, tr(H Sigma) = 14/27.
HAND = ToyProblem(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), np.array([1.0, 1.0, -1.0]))


def test_noise_scales_match_values_worked_out_by_hand():
    scales = learn_noise.noise_scales(HAND, (0.0, 0.0))
    assert scales.diversity == pytest.approx(3.0)        # sum ||g_i||^2 = 3, ||sum g_i||^2 = 1
    assert scales.yin_bound == pytest.approx(9.0)
    assert scales.b_simple == pytest.approx(8.0)         # (8/9) / (1/9)
    assert scales.b_noise == pytest.approx(14.0)         # (14/27) / (1/27)
    assert scales.eps_max == pytest.approx(3.0)          # (1/9) / (1/27)
    assert scales.loss_drop_max == pytest.approx(1 / 6)  # (1/81) / (2/27)


@pytest.mark.parametrize("w", [(-2.0, 2.0), (0.0, 0.0), (0.9, -0.4)])
def test_b_simple_is_n_delta_minus_one(w):
    scales = learn_noise.noise_scales(toy_problem(), w)
    assert scales.b_simple == pytest.approx(scales.yin_bound - 1.0, rel=1e-9)


def one_step_over_every_batch(problem, w, batch_size, step):
    """The mean loss decrease of one SGD step over all n^B batches drawn with replacement."""
    gradients = per_sample_gradients(problem, w)
    after = [mean_loss(problem, np.asarray(w) - step * gradients[list(batch)].mean(axis=0))
             for batch in itertools.product(range(problem.n), repeat=batch_size)]
    return mean_loss(problem, w) - float(np.mean(after))


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_the_best_step_of_a_batch_makes_the_predicted_progress(batch_size):
    problem, w = toy_problem(), (-1.0, 1.5)
    scales = learn_noise.noise_scales(problem, w)
    best = scales.eps_max / (1 + scales.b_noise / batch_size)
    progress = one_step_over_every_batch(problem, w, batch_size, best)
    assert progress == pytest.approx(scales.loss_drop_max / (1 + scales.b_noise / batch_size),
                                     rel=1e-9)
    for other in (0.9 * best, 1.1 * best):  # and no other step size does better
        assert one_step_over_every_batch(problem, w, batch_size, other) < progress


def test_trade_off_of_steps_and_examples():
    scales = learn_noise.NoiseScales(1.0, 6.0, 5.0, 4.0, 1.0, 1.0)  # B_noise = 4
    trade = learn_noise.batch_trade_off(scales, [1, 2, 4, 8])
    assert trade["steps"].tolist() == [5.0, 3.0, 2.0, 1.5]
    assert trade["examples"].tolist() == [1.25, 1.5, 2.0, 3.0]


def test_batch_range_covers_both_regimes():
    def scales(b_noise):
        return learn_noise.NoiseScales(1.0, 1.0, 1.0, b_noise, 1.0, 1.0)
    assert learn_noise.batch_range(scales(2.5)) == [1, 2, 4, 8, 16, 32, 64]
    assert learn_noise.batch_range(scales(10.0))[-1] == 256  # past 16 x 10
    assert learn_noise.batch_range(scales(float("inf")))[-1] == 64  # at the optimum


def test_at_the_optimum_the_scales_blow_up():
    problem = toy_problem()
    scales = learn_noise.noise_scales(problem, problem.optimum)
    assert scales.b_noise > 1e6 and scales.b_simple > 1e6


def test_doctests():
    assert doctest.testmod(learn_noise).attempted > 0 and doctest.testmod(learn_noise).failed == 0


def test_the_chart_marks_both_scales_where_they_are_on_the_log_axis():
    from divebatch.report.learn_figures import critical_batch_chart
    scales = learn_noise.NoiseScales(1.0, 6.0, 5.0, 4.0, 1.0, 1.0)
    figure = critical_batch_chart(learn_noise.batch_trade_off(scales, [1, 2, 4, 8]), 5.0, 4.0)
    assert [shape.x0 for shape in figure.layout.shapes] == [5.0, 4.0]
    # an annotation on a log axis sits at log10(B)
    assert [a.x for a in figure.layout.annotations] == pytest.approx([np.log10(5), np.log10(4)])
    assert list(figure.data[0].y) == [5.0, 3.0, 2.0, 1.5]
    unbounded = critical_batch_chart(learn_noise.batch_trade_off(scales, [1]), float("inf"), 4.0)
    assert len(unbounded.layout.shapes) == 1  # an infinite scale is not drawn
