"""Numbers for the Learn page: gradient diversity on a least-squares problem with 2 weights.

A handful of samples (x_i in R^2, y_i), a linear model without bias and the per-sample loss
l_i(w) = 1/2 (x_i . w - y_i)^2, whose gradient is g_i = (x_i . w - y_i) x_i. The diversity is
computed by the library (`gradient_diversity` on a torch model holding w), so the page and the
trainer agree; the closed-form gradients only draw the arrows.

The identity n * Delta = 1 + B_simple, with G = (1/n) sum_i g_i and
Sigma = (1/n) sum_i (g_i - G)(g_i - G)^T, is exact:
tr(Sigma) = (1/n) sum_i ||g_i||^2 - ||G||^2, so tr(Sigma) / ||G||^2 = n * Delta - 1.
With the unbiased 1/(n-1) covariance it is off by the factor n / (n - 1).

>>> toy = toy_problem()
>>> point = summarize(toy, (0.0, 0.0))
>>> abs(point.yin_bound - (1 + point.noise_scale)) < 1e-9
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from divebatch.data.problem import per_sample_loss
from divebatch.meter.diversity import gradient_diversity, per_sample_grad_sq_norms
from divebatch.report.code import sources
from divebatch.schedulers import DiveBatch


@dataclass(frozen=True)
class ToyProblem:
    x: np.ndarray  # (n, 2) inputs
    y: np.ndarray  # (n,) targets

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def optimum(self) -> np.ndarray:
        """The least-squares solution w*, where the mean gradient vanishes."""
        return np.linalg.lstsq(self.x, self.y, rcond=None)[0]


# The page's starting setting: seed 2 gives a well-conditioned ellipse that gradient descent
# with this step size crosses in about 25 steps.
DEFAULTS = {"n_samples": 6, "noise": 0.6, "seed": 2, "lr": 0.3, "steps": 25,
            "start": (-2.0, 2.0)}


def toy_problem(n_samples: int = DEFAULTS["n_samples"], noise: float = DEFAULTS["noise"],
                seed: int = DEFAULTS["seed"]) -> ToyProblem:
    """y = x . (1, -0.5) + noise, inputs stretched along one axis so the loss is elliptic."""
    if not 2 <= n_samples <= 64:
        raise ValueError(f"n_samples should be an int in [2, 64], but got n_samples={n_samples}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, 2)) * np.array([1.5, 0.7])
    y = x @ np.array([1.0, -0.5]) + noise * rng.standard_normal(n_samples)
    return ToyProblem(x, y)


def per_sample_gradients(problem: ToyProblem, w) -> np.ndarray:
    """g_i = (x_i . w - y_i) x_i, shape (n, 2): the arrows."""
    residuals = problem.x @ np.asarray(w, dtype=float) - problem.y  # (n,)
    return residuals[:, None] * problem.x


def mean_loss(problem: ToyProblem, w) -> float:
    return float(np.mean(0.5 * (problem.x @ np.asarray(w, dtype=float) - problem.y) ** 2))


def loss_surface(problem: ToyProblem, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """Mean loss on the grid w1 x w2, shape (len(w2), len(w1)) as plotly's contour wants."""
    grid = np.stack(np.meshgrid(w1, w2), axis=-1)  # (len(w2), len(w1), 2)
    residuals = grid @ problem.x.T - problem.y  # (len(w2), len(w1), n)
    return np.mean(0.5 * residuals ** 2, axis=-1)


def model_at(w) -> nn.Module:
    """A torch linear model (no bias, float64) holding w."""
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(np.asarray(w, dtype=float)).reshape(1, 2))
    return model


def library_diversity(problem: ToyProblem, w) -> float:
    """Delta at w as the library computes it (what DiveBatch measures while training)."""
    inputs, targets = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    return gradient_diversity(model_at(w), per_sample_loss("regression"), inputs, targets)


def library_sq_norms(problem: ToyProblem, w) -> np.ndarray:
    """||g_i||^2 at w from the library's per-layer rule, shape (n,)."""
    inputs, targets = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    return per_sample_grad_sq_norms(model_at(w), per_sample_loss("regression"), inputs,
                                    targets).numpy()


@dataclass(frozen=True)
class PointSummary:
    w: np.ndarray                  # (2,)
    gradients: np.ndarray          # (n, 2) per-sample gradients g_i
    gradient_sum: np.ndarray       # (2,) sum_i g_i
    sum_of_sq_norms: float         # sum_i ||g_i||^2 (library)
    sq_norm_of_sum: float          # ||sum_i g_i||^2
    diversity: float               # Delta (library)
    yin_bound: float               # n * Delta
    trace_cov: float               # tr(Sigma), 1/n convention
    trace_cov_unbiased: float      # tr(Sigma), 1/(n-1) convention
    mean_grad_sq_norm: float       # ||G||^2, G = mean gradient
    noise_scale: float             # B_simple = tr(Sigma) / ||G||^2 (1/n): n*Delta - 1 exactly
    noise_scale_unbiased: float    # the same with 1/(n-1): n/(n-1) times the above
    loss: float


def summarize(problem: ToyProblem, w) -> PointSummary:
    w = np.asarray(w, dtype=float)
    gradients = per_sample_gradients(problem, w)
    n = problem.n
    mean = gradients.mean(axis=0)  # G
    centred = gradients - mean
    trace_cov = float(np.sum(centred ** 2) / n)
    trace_unbiased = float(np.sum(centred ** 2) / (n - 1))
    mean_sq = float(mean @ mean)
    diversity = library_diversity(problem, w)
    total = gradients.sum(axis=0)
    return PointSummary(
        w=w, gradients=gradients, gradient_sum=total,
        sum_of_sq_norms=float(library_sq_norms(problem, w).sum()),
        sq_norm_of_sum=float(total @ total), diversity=diversity, yin_bound=n * diversity,
        trace_cov=trace_cov, trace_cov_unbiased=trace_unbiased, mean_grad_sq_norm=mean_sq,
        noise_scale=trace_cov / mean_sq if mean_sq > 0 else float("inf"),
        noise_scale_unbiased=trace_unbiased / mean_sq if mean_sq > 0 else float("inf"),
        loss=mean_loss(problem, w))


def gd_path(problem: ToyProblem, start, lr: float, steps: int) -> np.ndarray:
    """Full-batch gradient descent on the mean loss from `start`: iterates, (steps + 1, 2)."""
    if not lr > 0 or steps < 1:
        raise ValueError(f"lr should be > 0 and steps >= 1, but got lr={lr}, steps={steps}")
    path = [np.asarray(start, dtype=float)]
    for _ in range(steps):
        path.append(path[-1] - lr * per_sample_gradients(problem, path[-1]).mean(axis=0))
    return np.array(path)


def diversity_along(problem: ToyProblem, path: np.ndarray) -> dict[str, list[float]]:
    """Delta (library), n*Delta and the mean loss at every iterate of `path`."""
    diversities = [library_diversity(problem, w) for w in path]
    return {"step": list(range(len(path))), "diversity": diversities,
            "yin_bound": [problem.n * d for d in diversities],
            "loss": [mean_loss(problem, w) for w in path]}


def next_batch_size(diversity: float, n_samples: int, delta: float, batch_size: int,
                    max_batch_size: int) -> int:
    """DiveBatch's rule, run by the library's scheduler on a throwaway optimizer:
    int(min(max(delta * n * Delta, B_old), B_max)), B_max when Delta is NaN or infinite."""
    scheduler = _scheduler(n_samples, delta, batch_size, max_batch_size)
    return scheduler.step(diversity)


def batch_sizes_along(diversities: list[float], n_samples: int, delta: float,
                      batch_size: int, max_batch_size: int) -> list[int]:
    """The batch size DiveBatch would hold after a resize at each iterate in turn (it never
    shrinks), starting from `batch_size`."""
    scheduler = _scheduler(n_samples, delta, batch_size, max_batch_size)
    return [scheduler.step(d) for d in diversities]


def _scheduler(n_samples: int, delta: float, batch_size: int, max_batch_size: int):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return DiveBatch(optimizer, n_samples=n_samples, initial_batch_size=batch_size,
                     max_batch_size=max_batch_size, delta=delta, resize_every=1)


def library_sources() -> dict[str, str]:
    """The library code behind the page's numbers, by where it lives."""
    return sources([gradient_diversity, DiveBatch._next_batch_size, summarize])
