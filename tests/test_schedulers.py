"""Batch-size schedulers, tested like torch's LR schedulers: expected values written out per
epoch, state dicts loaded into differently configured instances, every validation message."""

import doctest
import io
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from divebatch import schedulers
from divebatch.schedulers import AdaBatch, BatchSizeScheduler, DiveBatch, FixedBatch

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

def divebatch(lrs=(0.1, 0.02), **overrides):
    kwargs = dict(n_samples=1000, initial_batch_size=32, max_batch_size=512, delta=0.1)
    return DiveBatch(make_optimizer(lrs), **kwargs | overrides)


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


# --- hot changes

def test_divebatch_update_delta_and_resize_every():
    scheduler = divebatch(lr_scaling="linear")
    scheduler.step(0.64)  # 64
    scheduler.update(delta=0.2, resize_every=2)
    assert scheduler.delta == 0.2 and scheduler.resize_every == 2
    assert [scheduler.measures_diversity(epoch) for epoch in (2, 3, 4)] == [True, False, True]
    assert_trajectory(scheduler, [0.5, None, 1.0], [100, 100, 200], [0.3125, 0.3125, 0.625])


def test_lowering_max_batch_size_clamps_at_the_next_step():
    scheduler = divebatch(resize_every=2, lr_scaling="linear")
    assert_trajectory(scheduler, [None, 3.0], [32, 300], [0.1, 0.9375])
    scheduler.update(max_batch_size=150)
    assert scheduler.batch_size == 300  # changes land at the epoch boundary
    assert_trajectory(scheduler, [None, 9.0], [150, 150], [0.46875, 0.46875], [0.5, 1.0])


def test_adabatch_update_and_clamp_without_decay():
    scheduler = AdaBatch(make_optimizer(), initial_batch_size=32, max_batch_size=512,
                         resize_every=1, lr_scaling="linear", lr_decay=0.75)
    assert_trajectory(scheduler, [None] * 3, [64, 128, 256], [0.15, 0.225, 0.3375])
    scheduler.update(max_batch_size=100, resize_every=2)
    assert_trajectory(scheduler, [None] * 3, [100, 100, 100], [0.1318359375] * 3,
                      [100 / 256, 1.0, 1.0])


def test_non_monotone_update_min_batch_size():
    scheduler = divebatch(monotone=False, min_batch_size=16)
    scheduler.update(min_batch_size=32)
    assert run(scheduler, [0.01])[0][0] == 32
    with pytest.raises(ValueError, match=re.escape("min_batch_size should be an int in "
                                                   "[1, initial_batch_size=32]")):
        scheduler.update(min_batch_size=64)


@pytest.mark.parametrize("make, changes, message", [
    (divebatch, {"lr_scaling": "sqrt"},
     "DiveBatch.update() accepts delta, max_batch_size, resize_every, min_batch_size, "
     "but got lr_scaling"),
    (divebatch, {"delta": 0}, "delta should be a finite float > 0, but got delta=0"),
    (divebatch, {"max_batch_size": 16},
     "max_batch_size should be an int >= initial_batch_size=32, but got max_batch_size=16"),
    (divebatch, {"resize_every": 0}, "resize_every should be an int >= 1, but got "
                                     "resize_every=0"),
    (divebatch, {"min_batch_size": 8},
     "min_batch_size applies only when monotone=False, but got min_batch_size=8"),
    (lambda: AdaBatch(make_optimizer(), initial_batch_size=8, max_batch_size=64,
                      resize_every=2), {"delta": 0.1},
     "AdaBatch.update() accepts max_batch_size, resize_every, but got delta"),
    (lambda: AdaBatch(make_optimizer(), initial_batch_size=8, max_batch_size=64,
                      resize_every=2), {"resize_every": 1.5},
     "resize_every should be an int >= 1, but got resize_every=1.5"),
    (lambda: FixedBatch(make_optimizer(), batch_size=8), {"batch_size": 16},
     "FixedBatch.update() accepts nothing, but got batch_size"),
])
def test_update_validation_leaves_scheduler_unchanged(make, changes, message):
    scheduler = make()
    before = scheduler.state_dict()
    with pytest.raises(ValueError, match=re.escape(message)):
        scheduler.update(**changes)
    assert scheduler.state_dict() == before


# --- constructor validation

OPT = make_optimizer()
DIVE = dict(n_samples=1000, initial_batch_size=32, max_batch_size=512, delta=0.1)
ADA = dict(initial_batch_size=32, max_batch_size=512, resize_every=2)


@pytest.mark.parametrize("cls, kwargs, message", [
    (FixedBatch, {"batch_size": 0}, "batch_size should be an int >= 1, but got batch_size=0"),
    (FixedBatch, {"batch_size": True}, "batch_size should be an int >= 1, but got "
                                       "batch_size=True"),
    (FixedBatch, {"batch_size": 32.0}, "batch_size should be an int >= 1, but got "
                                       "batch_size=32.0"),
    (AdaBatch, ADA | {"initial_batch_size": -1},
     "initial_batch_size should be an int >= 1, but got initial_batch_size=-1"),
    (AdaBatch, ADA | {"max_batch_size": 16},
     "max_batch_size should be an int >= initial_batch_size=32, but got max_batch_size=16"),
    (AdaBatch, ADA | {"resize_every": 0},
     "resize_every should be an int >= 1, but got resize_every=0"),
    (AdaBatch, ADA | {"factor": 1}, "factor should be an int >= 2, but got factor=1"),
    (AdaBatch, ADA | {"factor": 1.5}, "factor should be an int >= 2, but got factor=1.5"),
    (AdaBatch, ADA | {"lr_scaling": "cube"},
     "lr_scaling should be one of 'none', 'linear', 'sqrt', but got lr_scaling='cube'"),
    (AdaBatch, ADA | {"lr_decay": 0}, "lr_decay should be a float in (0, 1], but got "
                                      "lr_decay=0"),
    (AdaBatch, ADA | {"lr_decay": 1.5}, "lr_decay should be a float in (0, 1], but got "
                                        "lr_decay=1.5"),
    (AdaBatch, ADA | {"lr_decay": NAN}, "lr_decay should be a float in (0, 1], but got "
                                        "lr_decay=nan"),
    (DiveBatch, DIVE | {"n_samples": 0}, "n_samples should be an int >= 1, but got "
                                         "n_samples=0"),
    (DiveBatch, DIVE | {"initial_batch_size": 0},
     "initial_batch_size should be an int >= 1, but got initial_batch_size=0"),
    (DiveBatch, DIVE | {"max_batch_size": 31},
     "max_batch_size should be an int >= initial_batch_size=32, but got max_batch_size=31"),
    (DiveBatch, DIVE | {"delta": -1}, "delta should be a finite float > 0, but got delta=-1"),
    (DiveBatch, DIVE | {"delta": INF}, "delta should be a finite float > 0, but got "
                                       "delta=inf"),
    (DiveBatch, DIVE | {"delta": "0.1"}, "delta should be a finite float > 0, but got "
                                         "delta='0.1'"),
    (DiveBatch, DIVE | {"delta": True}, "delta should be a finite float > 0, but got "
                                        "delta=True"),
    (DiveBatch, DIVE | {"resize_every": False},
     "resize_every should be an int >= 1, but got resize_every=False"),
    (DiveBatch, DIVE | {"lr_scaling": "Linear"},
     "lr_scaling should be one of 'none', 'linear', 'sqrt', but got lr_scaling='Linear'"),
    (DiveBatch, DIVE | {"monotone": 0}, "monotone should be a bool, but got monotone=0"),
    (DiveBatch, DIVE | {"min_batch_size": 16},
     "min_batch_size applies only when monotone=False, but got min_batch_size=16 with "
     "monotone=True"),
    (DiveBatch, DIVE | {"monotone": False},
     "min_batch_size should be an int in [1, initial_batch_size=32] when monotone=False, "
     "but got min_batch_size=None"),
    (DiveBatch, DIVE | {"monotone": False, "min_batch_size": 33},
     "min_batch_size should be an int in [1, initial_batch_size=32] when monotone=False, "
     "but got min_batch_size=33"),
    (DiveBatch, DIVE | {"monotone": False, "min_batch_size": 0},
     "min_batch_size should be an int in [1, initial_batch_size=32] when monotone=False, "
     "but got min_batch_size=0"),
])
def test_constructor_validation(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(OPT, **kwargs)


@pytest.mark.parametrize("cls, kwargs", [(FixedBatch, {"batch_size": 8}), (AdaBatch, ADA),
                                         (DiveBatch, DIVE)])
def test_optimizer_must_be_an_optimizer(cls, kwargs):
    with pytest.raises(ValueError, match="optimizer should be a torch.optim.Optimizer, but "
                                         "got optimizer of type list"):
        cls([torch.nn.Parameter(torch.zeros(1))], **kwargs)


# --- state dicts

def save_and_load(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_plain(value):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            assert_plain(item)
    else:
        assert value is None or type(value) in (bool, int, float, str), value


CONFIGS = {
    "divebatch": lambda opt: DiveBatch(opt, n_samples=1000, initial_batch_size=32,
                                       max_batch_size=512, delta=0.1, resize_every=2,
                                       lr_scaling="linear", monotone=False, min_batch_size=16),
    "divebatch_other": lambda opt: DiveBatch(opt, n_samples=50, initial_batch_size=4,
                                             max_batch_size=8, delta=3.0, resize_every=3,
                                             lr_scaling="sqrt"),
    "adabatch": lambda opt: AdaBatch(opt, initial_batch_size=32, max_batch_size=256,
                                     resize_every=2, lr_scaling="sqrt", lr_decay=0.75),
    "adabatch_other": lambda opt: AdaBatch(opt, initial_batch_size=1, max_batch_size=2,
                                           resize_every=1, factor=3),
    "fixed": lambda opt: FixedBatch(opt, batch_size=64),
    "fixed_other": lambda opt: FixedBatch(opt, batch_size=2),
}


@pytest.mark.parametrize("name", ["divebatch", "adabatch", "fixed"])
def test_state_dict_round_trip_into_differently_configured_instance(name):
    diversities = [None, 0.64, None, 3.0, None, 0.2, None, NAN, None, 0.1]
    reference = CONFIGS[name](make_optimizer())
    expected = run(reference, diversities)

    saved_optimizer = make_optimizer()
    saved = CONFIGS[name](saved_optimizer)
    run(saved, diversities[:3])
    state = saved.state_dict()
    assert_plain(state)
    state, optimizer_state = save_and_load((state, saved_optimizer.state_dict()))

    optimizer = make_optimizer((1.0, 1.0))
    optimizer.load_state_dict(optimizer_state)
    restored = CONFIGS[f"{name}_other"](optimizer)
    restored.load_state_dict(state)
    assert restored.state_dict() == saved.state_dict()
    assert restored.last_epoch == 3
    assert [restored.measures_diversity(epoch) for epoch in range(4, 11)] == \
        [reference.measures_diversity(epoch) for epoch in range(4, 11)]
    assert run(restored, diversities[3:]) == expected[3:]  # same arithmetic, exactly


def test_state_dict_of_another_class_is_rejected():
    scheduler = divebatch()
    state = AdaBatch(make_optimizer(), **ADA).state_dict()
    with pytest.raises(ValueError, match=re.escape("state_dict does not fit DiveBatch: missing "
                                                   "keys ['delta', 'min_batch_size'")):
        scheduler.load_state_dict(state)


def test_invalid_state_dict_is_rejected_and_changes_nothing():
    scheduler = divebatch()
    before = scheduler.state_dict()
    with pytest.raises(ValueError, match=re.escape("delta should be a finite float > 0")):
        scheduler.load_state_dict(before | {"delta": -1.0})
    with pytest.raises(ValueError, match=re.escape("last_epoch should be an int >= 0")):
        scheduler.load_state_dict(before | {"last_epoch": -1})
    assert scheduler.state_dict() == before


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
