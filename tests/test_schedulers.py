"""Batch-size schedulers, tested like torch's LR schedulers: expected values written out per
epoch, composition with torch's LR schedulers, properties (changes while running, validation and
state dicts: test_scheduler_changes.py)."""

import doctest
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from divebatch import schedulers
from divebatch.schedulers import AdaBatch, BatchSizeScheduler, DiveBatch, FixedBatch
from tests.helpers.schedules import (INF, NAN, assert_trajectory, divebatch, make_optimizer,
                                     run)

# --- FixedBatch

def test_fixed_batch_never_changes():
    scheduler = FixedBatch(make_optimizer(), batch_size=128)
    assert isinstance(scheduler, BatchSizeScheduler)
    assert (scheduler.batch_size, scheduler.last_epoch) == (128, 0)
    assert_trajectory(scheduler, [None, 3.0, NAN, None], [128] * 4, [0.1] * 4, [1.0] * 4)
    assert scheduler.last_epoch == 4
    assert [scheduler.measures_diversity(epoch) for epoch in range(1, 5)] == [False] * 4


# --- AdaBatch

def test_adabatch_linear_with_decay_interval_2_and_cap():
    scheduler = AdaBatch(make_optimizer(), initial_batch_size=32, max_batch_size=256,
                         resize_every=2, lr_scaling="linear", lr_decay=0.75)
    assert_trajectory(scheduler, [None] * 8,
                      [32, 64, 64, 128, 128, 256, 256, 256],
                      [0.1, 0.15, 0.15, 0.225, 0.225, 0.3375, 0.3375, 0.3375],
                      [1.0, 1.5, 1.0, 1.5, 1.0, 1.5, 1.0, 1.0])


def test_adabatch_sqrt():
    scheduler = AdaBatch(make_optimizer(), initial_batch_size=32, max_batch_size=128,
                         resize_every=2, lr_scaling="sqrt")
    assert_trajectory(scheduler, [None] * 6,
                      [32, 64, 64, 128, 128, 128],
                      [0.1, 0.1414213562, 0.1414213562, 0.2, 0.2, 0.2])


def test_adabatch_none_with_decay_stops_decaying_at_the_cap():
    scheduler = AdaBatch(make_optimizer(), initial_batch_size=32, max_batch_size=128,
                         resize_every=2, lr_decay=0.75)
    assert_trajectory(scheduler, [None] * 8,
                      [32, 64, 64, 128, 128, 128, 128, 128],
                      [0.1, 0.075, 0.075, 0.05625, 0.05625, 0.05625, 0.05625, 0.05625])


def test_adabatch_factor_4_capped_between_powers():
    scheduler = AdaBatch(make_optimizer(), initial_batch_size=16, max_batch_size=100,
                         resize_every=1, factor=4, lr_scaling="linear")
    assert_trajectory(scheduler, [None] * 3, [64, 100, 100], [0.4, 0.625, 0.625],
                      [4.0, 1.5625, 1.0])


def test_adabatch_never_measures_diversity():
    scheduler = AdaBatch(make_optimizer(), initial_batch_size=8, max_batch_size=64,
                         resize_every=2)
    assert [scheduler.measures_diversity(epoch) for epoch in range(1, 5)] == [False] * 4


# --- DiveBatch (n_samples=1000, delta=0.1: the proposal is 100 * diversity)

def test_divebatch_linear_every_epoch_never_shrinks_and_caps():
    scheduler = divebatch(lr_scaling="linear")
    assert_trajectory(scheduler, [0.2, 0.507, 0.4, 1.25, 3.0, 0.1, 6.0],
                      [32, 50, 50, 125, 300, 300, 512],
                      [0.1, 0.15625, 0.15625, 0.390625, 0.9375, 0.9375, 1.6],
                      [1.0, 1.5625, 1.0, 2.5, 2.4, 1.0, 512 / 300])


def test_divebatch_none_keeps_lr():
    scheduler = divebatch()
    assert_trajectory(scheduler, [0.5, 2.0, 9.0], [50, 200, 512], [0.1] * 3, [1.0] * 3)


@pytest.mark.parametrize("bad", [NAN, INF, -INF, torch.tensor(NAN), torch.tensor(INF)])
def test_divebatch_nan_or_infinite_diversity_jumps_to_max(bad):
    scheduler = divebatch(lr_scaling="linear")
    assert_trajectory(scheduler, [0.5, bad, 0.1], [50, 512, 512], [0.15625, 1.6, 1.6])


def test_divebatch_interval_3_sqrt_ignores_off_epoch_diversity():
    scheduler = divebatch(resize_every=3, lr_scaling="sqrt")
    assert_trajectory(scheduler, [9.0, 9.0, 1.28, 9.0, None, 2.0, None, None, 0.5],
                      [32, 32, 128, 128, 128, 200, 200, 200, 200],
                      [0.1, 0.1, 0.2, 0.2, 0.2, 0.25, 0.25, 0.25, 0.25])


def test_divebatch_interval_2_accepts_tensors():
    scheduler = divebatch(resize_every=2, lr_scaling="linear")
    diversities = [None, torch.tensor(0.625), None, torch.tensor(1.6, dtype=torch.float64)]
    assert_trajectory(scheduler, diversities, [32, 62, 62, 160], [0.1, 0.19375, 0.19375, 0.5])


def test_divebatch_measures_diversity_on_resize_epochs():
    every = divebatch()
    assert [every.measures_diversity(epoch) for epoch in range(1, 5)] == [True] * 4
    third = divebatch(resize_every=3)
    assert [third.measures_diversity(epoch) for epoch in range(1, 10)] == [
        False, False, True, False, False, True, False, False, True]
    with pytest.raises(ValueError, match=re.escape("epoch should be an int >= 1, but got "
                                                   "epoch=0")):
        third.measures_diversity(0)


def test_divebatch_non_monotone_shrinks_down_to_min_batch_size():
    scheduler = divebatch(lr_scaling="linear", monotone=False, min_batch_size=16)
    assert_trajectory(scheduler, [0.5, 0.2, 0.1, 2.0, NAN, 0.0],
                      [50, 20, 16, 200, 512, 16],
                      [0.15625, 0.0625, 0.05, 0.625, 1.6, 0.05],
                      [1.5625, 0.4, 0.8, 12.5, 2.56, 0.03125])


def test_divebatch_requires_diversity_on_resize_epoch_only():
    scheduler = divebatch(resize_every=2)
    assert scheduler.step() == 32
    with pytest.raises(ValueError, match=r"diversity is required at the end of epoch 2 .* "
                                         r"but got diversity=None"):
        scheduler.step()
    assert scheduler.last_epoch == 1  # the failed step changed nothing
    assert scheduler.step(1.0) == 100


def test_lr_tensors_are_scaled_in_place():
    lr = torch.tensor(0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    scheduler = DiveBatch(optimizer, n_samples=1000, initial_batch_size=32,
                          max_batch_size=512, delta=0.1, lr_scaling="linear")
    scheduler.step(0.64)
    assert optimizer.param_groups[0]["lr"] is lr
    assert scheduler.get_last_lr() == pytest.approx([0.2])


# --- composition with torch LR schedulers

def step_both(optimizer, batch_scheduler, lr_scheduler, diversities):
    per_epoch = []
    for diversity in diversities:
        optimizer.step()
        batch = batch_scheduler.step(diversity)
        lr_scheduler.step()
        per_epoch.append((batch, batch_scheduler.get_last_lr()))
    return per_epoch


def test_composes_with_multistep_lr():
    optimizer = make_optimizer()
    batch_scheduler = AdaBatch(optimizer, initial_batch_size=32, max_batch_size=128,
                               resize_every=2, lr_scaling="linear")
    lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3], gamma=0.1)
    per_epoch = step_both(optimizer, batch_scheduler, lr_scheduler, [None] * 5)
    assert [batch for batch, _ in per_epoch] == [32, 64, 64, 128, 128]
    assert [lrs[0] for _, lrs in per_epoch] == pytest.approx([0.1, 0.2, 0.02, 0.04, 0.04])
    assert [lrs[1] for _, lrs in per_epoch] == pytest.approx([0.02, 0.04, 0.004, 0.008, 0.008])
    assert lr_scheduler.get_last_lr() == pytest.approx(per_epoch[-1][1])


def test_composes_with_cosine_annealing_lr():
    optimizer = make_optimizer()
    batch_scheduler = DiveBatch(optimizer, n_samples=1000, initial_batch_size=32,
                                max_batch_size=512, delta=0.1, resize_every=2,
                                lr_scaling="sqrt")
    lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    per_epoch = step_both(optimizer, batch_scheduler, lr_scheduler,
                          [None, 1.28, None, 5.12, None, 0.1])
    assert [batch for batch, _ in per_epoch] == [32, 128, 128, 512, 512, 512]
    batch_factors = [1.0, 2.0, 2.0, 4.0, 4.0, 4.0]  # sqrt(B / 32)
    for epoch, ((_, lrs), batch_factor) in enumerate(zip(per_epoch, batch_factors), start=1):
        cosine = (1 + math.cos(math.pi * epoch / 10)) / 2
        assert lrs == pytest.approx([0.1 * cosine * batch_factor, 0.02 * cosine * batch_factor])


# --- properties

diversity_values = st.one_of(st.floats(min_value=0, max_value=1e6),
                             st.sampled_from([NAN, INF]))


@settings(max_examples=60, deadline=None)
@given(initial=st.integers(1, 256), extra=st.integers(0, 4096),
       delta=st.floats(1e-4, 10.0), n_samples=st.integers(1, 100_000),
       resize_every=st.integers(1, 4), diversities=st.lists(diversity_values, max_size=12))
def test_monotone_divebatch_stays_in_range_never_shrinks_and_lr_tracks_batch(
        initial, extra, delta, n_samples, resize_every, diversities):
    optimizer = make_optimizer((0.1,))
    scheduler = DiveBatch(optimizer, n_samples=n_samples, initial_batch_size=initial,
                          max_batch_size=initial + extra, delta=delta,
                          resize_every=resize_every, lr_scaling="linear")
    previous = initial
    for batch, _, _ in run(scheduler, diversities):
        assert initial <= previous <= batch <= initial + extra
        previous = batch
    # linear factors telescope: lr / lr_0 == B / B_0
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * previous / initial)


@settings(max_examples=60, deadline=None)
@given(floor=st.integers(1, 64), above=st.integers(0, 64), extra=st.integers(0, 1024),
       diversities=st.lists(diversity_values, max_size=12))
def test_non_monotone_divebatch_stays_within_min_and_max(floor, above, extra, diversities):
    scheduler = DiveBatch(make_optimizer((0.1,)), n_samples=1000,
                          initial_batch_size=floor + above,
                          max_batch_size=floor + above + extra, delta=0.1, monotone=False,
                          min_batch_size=floor, lr_scaling="sqrt")
    for batch, _, _ in run(scheduler, diversities):
        assert floor <= batch <= floor + above + extra
    assert scheduler.get_last_lr()[0] == pytest.approx(
        0.1 * math.sqrt(scheduler.batch_size / (floor + above)))


def test_docstring_examples_run():
    assert doctest.testmod(schedulers).failed == 0
