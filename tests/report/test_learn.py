"""The Learn page's numbers: library diversity, the noise-scale identity, the batch rule."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divebatch.report import learn

POINTS = st.tuples(st.floats(-3, 3), st.floats(-3, 3))


def direct_diversity(problem, w):
    """Delta from the closed-form gradients: the obviously correct loop."""
    gradients = [(x @ np.asarray(w) - y) * x for x, y in zip(problem.x, problem.y)]
    total = np.sum(gradients, axis=0)
    return sum(g @ g for g in gradients) / (total @ total)


@settings(max_examples=25, deadline=None)
@given(w=POINTS, n=st.integers(2, 8), seed=st.integers(0, 50))
def test_library_diversity_matches_the_formula_and_the_identity_is_exact(w, n, seed):
    problem = learn.toy_problem(n, 0.6, seed)
    point = learn.summarize(problem, w)
    assert point.diversity == pytest.approx(direct_diversity(problem, w), rel=1e-9)
    assert point.diversity >= 1 / n - 1e-12
    assert point.yin_bound == pytest.approx(n * point.diversity)
    # n * Delta = 1 + B_simple with the 1/n covariance, to float precision ...
    assert point.yin_bound == pytest.approx(1 + point.noise_scale, rel=1e-9)
    # ... and off by n / (n - 1) with the unbiased one
    assert point.noise_scale_unbiased == pytest.approx(point.noise_scale * n / (n - 1))


def test_arrows_agree_with_the_library_norms():
    problem = learn.toy_problem()
    point = learn.summarize(problem, (0.3, -1.2))
    np.testing.assert_allclose(np.sum(point.gradients ** 2, axis=1),
                               learn.library_sq_norms(problem, (0.3, -1.2)), rtol=1e-10)
    np.testing.assert_allclose(point.gradient_sum, point.gradients.sum(axis=0))
    assert point.sum_of_sq_norms == pytest.approx(np.sum(point.gradients ** 2))


def test_diversity_grows_as_gradient_descent_approaches_the_optimum():
    problem = learn.toy_problem()
    path = learn.gd_path(problem, learn.DEFAULTS["start"], learn.DEFAULTS["lr"],
                         learn.DEFAULTS["steps"])
    along = learn.diversity_along(problem, path)
    assert np.linalg.norm(path[-1] - problem.optimum) < 0.05
    assert along["loss"][-1] < along["loss"][0]
    assert along["yin_bound"][-1] > 10 * along["yin_bound"][0]
    with pytest.raises(ValueError, match="lr should be > 0"):
        learn.gd_path(problem, (0, 0), lr=0.0, steps=3)


def test_batch_rule_is_the_schedulers():
    assert learn.next_batch_size(2.0, 6, 0.5, 1, 64) == 6           # 0.5 * 6 * 2
    assert learn.next_batch_size(100.0, 6, 0.5, 1, 64) == 64        # capped at B_max
    assert learn.next_batch_size(0.2, 6, 0.5, 4, 64) == 4           # never below B_old
    assert learn.next_batch_size(float("inf"), 6, 0.5, 4, 64) == 64
    assert learn.batch_sizes_along([1.0, 0.5, 3.0], 6, 1.0, 2, 100) == [6, 6, 18]


def test_page_can_show_the_library_code_and_the_doctest_passes():
    sources = learn.library_sources()
    assert any("def gradient_diversity" in s for s in sources.values())
    assert any("def _next_batch_size" in s for s in sources.values())
    assert doctest.testmod(learn).failed == 0
    with pytest.raises(ValueError, match="n_samples should be"):
        learn.toy_problem(1)
