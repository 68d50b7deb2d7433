"""Problems: seeded train/validation tensors held on the training device.

Synthetic convex (least squares, logistic regression), synthetic non-convex (sine regression,
a non-linearly separable classification set), scikit-learn's digits (real, offline) and the
image datasets of the paper (CIFAR-10/100, Tiny-ImageNet, when their files are present).

>>> problem = load_problem(RunConfig(problem="least_squares", n_samples=500, dim=10), "cpu")
>>> problem.x_train.shape, problem.task
(torch.Size([400, 10]), 'regression')
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from divebatch.config import IMAGE_DATASETS, SYNTHETIC_DEFAULTS, RunConfig
from divebatch.data.image_problems import check_available as check_image_files
from divebatch.data.image_problems import load_image_problem
from divebatch.data.problem import Problem


def load_problem(config: RunConfig, device: torch.device | str) -> Problem:
    """The problem named by `config.problem`, split and moved to `device`."""
    if config.problem in SYNTHETIC_DEFAULTS:
        problem = _synthetic(config)
    elif config.problem == "digits":
        problem = _digits(config)
    else:
        problem = load_image_problem(config, device)
    return _to_device(problem, torch.device(device))


def check_available(config: RunConfig) -> None:
    """Raise a one-line ValueError if the problem's data files are missing."""
    if config.problem in IMAGE_DATASETS:
        check_image_files(config)


def _to_device(problem: Problem, device: torch.device) -> Problem:
    for name in ("x_train", "y_train", "x_val", "y_val"):
        setattr(problem, name, getattr(problem, name).to(device))
    return problem


def _sizes(config: RunConfig) -> tuple[int, int]:
    n_default, d_default = SYNTHETIC_DEFAULTS[config.problem]
    return config.n_samples or n_default, config.dim or d_default


def _split(x: np.ndarray, y: np.ndarray, config: RunConfig) -> tuple[Tensor, ...]:
    """Seeded shuffle, then the last `val_fraction` of it is the validation set."""
    order = np.random.default_rng([config.seed, 1]).permutation(len(x))
    n_val = max(1, int(round(len(x) * config.val_fraction)))
    train, val = order[:-n_val], order[-n_val:]
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in
                 (x[train], y[train], x[val], y[val]))


def _synthetic(config: RunConfig) -> Problem:
    n, d = _sizes(config)
    rng = np.random.default_rng([config.seed, 0])
    make = {"least_squares": _least_squares, "logistic": _logistic, "sine": _sine,
            "classification": _classification}[config.problem]
    x, y, task, n_outputs = make(rng, n, d, config.noise, config.seed)
    x = x.astype(np.float32)
    y = y.astype(np.int64 if task == "multiclass" else np.float32)
    x_train, y_train, x_val, y_val = _split(x, y, config)
    return Problem(config.problem, task, x_train, y_train, x_val, y_val, n_outputs, (d,))


def _least_squares(rng, n, d, noise, seed):
    """y = x . w* + noise, x ~ N(0, I): a convex quadratic loss in the linear model."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    w_star = rng.standard_normal(d).astype(np.float32) / np.sqrt(d)
    y = x @ w_star + noise * rng.standard_normal(n).astype(np.float32)
    return x, y.astype(np.float32), "regression", 1


def _logistic(rng, n, d, noise, seed):
    """Labels drawn from a logistic model P(y=1|x) = sigmoid(x . w* / (noise + eps))."""
    x = rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    w_star = rng.standard_normal(d).astype(np.float32) * 4.0
    logits = x @ w_star / max(noise, 1e-3) * 0.1
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return x, y, "binary", 1


def _sine(rng, n, d, noise, seed):
    """y = sin(A x*) + noise: row i of A is sample i's input, a non-convex fit for an MLP."""
    a = rng.standard_normal((n, d)).astype(np.float32)
    x_star = rng.standard_normal(d).astype(np.float32) * (2.0 / np.sqrt(d))
    y = np.sin(a @ x_star) + noise * rng.standard_normal(n).astype(np.float32)
    return a, y.astype(np.float32), "regression", 1


def _classification(rng, n, d, noise, seed):
    """Four classes of several Gaussian clusters each: not linearly separable."""
    from sklearn.datasets import make_classification
    x, y = make_classification(n_samples=n, n_features=d, n_informative=min(d, 10),
                               n_redundant=0, n_classes=4, n_clusters_per_class=3,
                               class_sep=1.5, flip_y=min(noise, 1.0) * 0.1,
                               random_state=seed)
    return x.astype(np.float32), y.astype(np.int64), "multiclass", 4


def _digits(config: RunConfig) -> Problem:
    """scikit-learn's 1797 handwritten 8x8 digits, scaled to [0, 1], shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, y_train, x_val, y_val = _split(x, digits.target.astype(np.int64), config)
    return Problem("digits", "multiclass", x_train, y_train, x_val, y_val, 10, (1, 8, 8))
