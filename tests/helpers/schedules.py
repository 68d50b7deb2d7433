"""Batch-size schedulers as the tests drive them: an optimizer with several LR groups, one step
per epoch, and a trajectory checked against values written out by hand."""

import pytest
import torch

from divebatch.schedulers import DiveBatch

NAN, INF = float("nan"), float("inf")


def make_optimizer(lrs=(0.1, 0.02)):
    """SGD with one param group per lr, so each LR rule is checked on every group."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def run(scheduler, diversities):
    """Step once per epoch; per epoch: (batch size, lrs of every group, last_lr_factor)."""
    trajectory = []
    for diversity in diversities:
        batch = scheduler.step(diversity)
        assert batch == scheduler.batch_size
        trajectory.append((batch, scheduler.get_last_lr(), scheduler.last_lr_factor))
    return trajectory


def assert_trajectory(scheduler, diversities, batches, lrs, factors=None):
    """`lrs[e]` is the lr of the first group after epoch e+1; the others keep their ratio."""
    ratios = [lr / scheduler.get_last_lr()[0] for lr in scheduler.get_last_lr()]
    trajectory = run(scheduler, diversities)
    assert [batch for batch, _, _ in trajectory] == batches
    for epoch, ((_, group_lrs, _), lr) in enumerate(zip(trajectory, lrs), start=1):
        assert group_lrs == pytest.approx([lr * ratio for ratio in ratios]), f"epoch {epoch}"
    if factors is not None:
        assert [factor for _, _, factor in trajectory] == pytest.approx(factors)


def divebatch(lrs=(0.1, 0.02), **overrides):
    """DiveBatch over 1000 samples with delta 0.1: its proposal is 100 * diversity."""
    kwargs = dict(n_samples=1000, initial_batch_size=32, max_batch_size=512, delta=0.1)
    return DiveBatch(make_optimizer(lrs), **kwargs | overrides)
