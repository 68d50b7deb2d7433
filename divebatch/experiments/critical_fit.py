"""The numbers of a critical-batch measurement: steps to a target loss, McCandlish's fit and
the gradient noise scale.

McCandlish et al. (arXiv 1812.06162) model the optimizer steps S and training examples E = S * B
needed to reach a given loss decrease at batch size B as

    S(B) = S_min * (1 + B_crit / B)        E(B) = E_min * (1 + B / B_crit)

so S is linear in 1 / B (S = S_min + E_min / B) and B_crit = E_min / S_min. At B = B_crit a
branch needs twice the minimal steps and twice the minimal examples: below it, doubling B
nearly halves the steps (they fall in proportion to 1 / B); above it, steps barely fall and
examples grow. That factor of two is the tolerance of the definition.

>>> fit = fit_critical_batch([8, 16, 32, 64, 128], [90.0, 50.0, 30.0, 20.0, 15.0])  # 10 + 640 / B
>>> round(fit.critical_batch), fit.bound
(64, 'inside')
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


def batch_size_grid(smallest: int, largest: int) -> list[int]:
    """smallest * 2^k up to largest, and largest itself: the batch sizes branched to.

    >>> batch_size_grid(16, 1024), batch_size_grid(10, 100)
    ([16, 32, 64, 128, 256, 512, 1024], [10, 20, 40, 80, 100])
    """
    sizes = [smallest]
    while sizes[-1] * 2 <= largest:
        sizes.append(sizes[-1] * 2)
    return sizes if sizes[-1] == largest else [*sizes, largest]


def steps_to_target(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first step at which a loss curve [(step, loss), ...] (evaluated at a few steps,
    the first at the branch's start) reaches `target`, interpolated linearly between the two
    evaluations around the crossing; None if it never does.

    >>> steps_to_target([(0, 1.0), (10, 0.6), (20, 0.2)], 0.4)
    15.0
    """
    for (step_before, before), (step_after, after) in zip(curve, curve[1:]):
        if after <= target:
            if before <= target:
                return float(step_before)
            return step_before + (step_after - step_before) * (before - target) / (before - after)
    return None


@dataclass
class CriticalFit:
    critical_batch: float     # B_crit = E_min / S_min (inf: steps still fall as 1 / B)
    min_steps: float          # S_min
    min_examples: float       # E_min
    bound: str                # "inside" the branched batch sizes, or B_crit is "below" the
                              # smallest or "above" the largest (an extrapolation)
    relative_residual: float  # root mean square of (fitted S - measured S) / measured S
    points: int               # branches that reached the target (the fit's data)

    def to_dict(self) -> dict:
        return asdict(self)


def fit_critical_batch(batch_sizes: list[float], steps: list[float | None]) -> CriticalFit | None:
    """Fit S = S_min + E_min / B to the branches that reached the target (steps not None),
    weighting each by 1 / S (relative errors: S spans orders of magnitude), with S_min and
    E_min >= 0 (a two-variable non-negative least squares, solved exactly). None with fewer
    than two such branches."""
    pairs = [(float(b), float(s)) for b, s in zip(batch_sizes, steps)
             if s is not None and math.isfinite(s) and s > 0]
    if len(pairs) < 2:
        return None
    sizes, measured = (np.array(column) for column in zip(*pairs))
    design = np.stack([np.ones_like(sizes), 1.0 / sizes], axis=1) / measured[:, None]
    target = np.ones_like(measured)  # measured / measured
    min_steps, min_examples = _non_negative_least_squares(design, target)
    fitted = min_steps + min_examples / sizes
    residual = float(np.sqrt(np.mean(((fitted - measured) / measured) ** 2)))
    critical = min_examples / min_steps if min_steps > 0 else math.inf
    bound = ("below" if critical < sizes.min() else
             "above" if critical > sizes.max() else "inside")
    return CriticalFit(float(critical), float(min_steps), float(min_examples), bound,
                       residual, len(pairs))


def _non_negative_least_squares(design: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """argmin |design x - target| over x >= 0 for two columns: the unconstrained solution if
    it is non-negative, else the better of the two one-column fits."""
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    if (solution >= 0).all():
        return float(solution[0]), float(solution[1])
    candidates = []
    for column in (0, 1):
        x = np.zeros(2)
        values = design[:, column]
        x[column] = max(0.0, float(values @ target / (values @ values)))
        candidates.append((float(np.sum((design @ x - target) ** 2)), x))
    best = min(candidates, key=lambda candidate: candidate[0])[1]
    return float(best[0]), float(best[1])


def noise_scale(samples: int, diversity: float) -> float:
    """The gradient noise scale B_simple = tr(Sigma) / |G|^2 of `samples` per-sample gradients
    from their diversity Delta = sum |g_i|^2 / |sum g_i|^2: n * Delta = 1 + B_simple
    (G their mean, Sigma their covariance with 1 / n).

    >>> noise_scale(4, 0.25)  # four equal gradients: no noise
    0.0
    """
    return samples * diversity - 1.0
