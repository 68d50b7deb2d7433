"""The Learn page's step from diversity to the critical batch size, on its least-squares toy.

Three numbers at a point w, each from the last:

- the diversity Delta (the library's `gradient_diversity`) and Yin's bound n * Delta;
- the gradient noise scale B_simple = tr(Sigma) / ||G||^2 = n * Delta - 1 (McCandlish et al.,
  arXiv 1812.06162), Sigma the per-sample gradients' covariance with 1/n, G their mean;
- the critical batch size of McCandlish's model, B_noise = tr(H Sigma) / (G^T H G), with the
  Hessian H = X^T X / n of this quadratic loss. B_simple is B_noise with H replaced by the
  identity: they agree when the curvature is the same in every direction.

On a quadratic the model is exact. One SGD step -eps * G_B, with G_B the mean gradient of B
samples drawn with replacement (E G_B = G, Cov G_B = Sigma / B), lowers the loss in
expectation by

    eps ||G||^2 - eps^2 / 2 (G^T H G + tr(H Sigma) / B),

which is largest at eps_opt(B) = eps_max / (1 + B_noise / B), where it is
dL_max / (1 + B_noise / B), eps_max = ||G||^2 / G^T H G and dL_max = ||G||^4 / (2 G^T H G).
So the steps for a given progress go as S(B) = S_min (1 + B_noise / B) and the examples as
E(B) = B S(B) = E_min (1 + B / B_noise): below B_noise a bigger batch saves steps almost for
free; above it, it mostly spends examples.

>>> from divebatch.report.learn import toy_problem
>>> scales = noise_scales(toy_problem(), (0.0, 0.0))
>>> abs(scales.yin_bound - (1 + scales.b_simple)) < 1e-9
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from divebatch.report.learn import ToyProblem, library_diversity, per_sample_gradients


@dataclass(frozen=True)
class NoiseScales:
    diversity: float        # Delta at w (library)
    yin_bound: float        # n * Delta
    b_simple: float         # tr(Sigma) / ||G||^2 (1/n covariance): n * Delta - 1
    b_noise: float          # tr(H Sigma) / (G^T H G): the model's critical batch size
    eps_max: float          # the best step size with the full gradient
    loss_drop_max: float    # the loss decrease of that step


def hessian(problem: ToyProblem) -> np.ndarray:
    """H = X^T X / n, shape (2, 2): the mean loss's Hessian (the same at every w)."""
    return problem.x.T @ problem.x / problem.n


def noise_scales(problem: ToyProblem, w) -> NoiseScales:
    """Delta, n * Delta, B_simple and B_noise at w; infinite at the optimum (G = 0)."""
    gradients = per_sample_gradients(problem, w)  # (n, 2)
    mean = gradients.mean(axis=0)  # G
    centred = gradients - mean
    covariance = centred.T @ centred / problem.n  # Sigma, (2, 2)
    h = hessian(problem)
    curvature = float(mean @ h @ mean)  # G^T H G
    squared = float(mean @ mean)
    diversity = library_diversity(problem, w)
    return NoiseScales(
        diversity=diversity, yin_bound=problem.n * diversity,
        b_simple=_ratio(float(np.trace(covariance)), squared),
        b_noise=_ratio(float(np.trace(h @ covariance)), curvature),
        eps_max=_ratio(squared, curvature), loss_drop_max=_ratio(squared ** 2, 2 * curvature))


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom > 0 else float("inf")


def batch_trade_off(scales: NoiseScales, batch_sizes) -> dict[str, np.ndarray]:
    """Per batch size: steps S(B) / S_min = 1 + B_noise / B and examples
    E(B) / E_min = 1 + B / B_noise for the same progress, each step at its best size."""
    batches = np.asarray(batch_sizes, dtype=float)
    return {"batch_size": batches, "steps": 1.0 + scales.b_noise / batches,
            "examples": 1.0 + batches / scales.b_noise}


def batch_range(scales: NoiseScales) -> list[int]:
    """Powers of two from 1 past 16 B_noise (at least 64, at most 2^16): both regimes."""
    top = min(max(16 * scales.b_noise, 64.0), 2.0 ** 16) if np.isfinite(scales.b_noise) \
        else 64.0
    return [2 ** k for k in range(int(np.ceil(np.log2(top))) + 1)]
