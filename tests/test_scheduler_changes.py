"""Batch-size schedulers changed while running (hot changes), their constructors' and
updates' validation messages, and state dicts loaded into differently configured instances."""

import io
import re

import pytest
import torch

from divebatch.schedulers import AdaBatch, DiveBatch, FixedBatch
from tests.helpers.schedules import (INF, NAN, assert_trajectory, divebatch, make_optimizer,
                                     run)


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
