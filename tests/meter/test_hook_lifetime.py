"""When DiversityMeter's hooks are on the model: only during a measured batch; with
``keep_hooks``, left in place (doing nothing) while the next batch is measured too, and removed
before an unmeasured batch, by a failing batch, by ``detach()``, on leaving ``with meter`` and
when the meter is collected."""

import gc

import pytest
import torch

from divebatch.meter.diversity import DiversityMeter
from divebatch.meter.hooks import SqNormHooks
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, conv_model, cross_entropy, image_batch


def all_hooks(model):
    return [hook for m in model.modules()
            for hook in (*m._forward_hooks.values(), *m._backward_hooks.values(),
                         *m._forward_pre_hooks.values())]


def measure(meter, model, inputs, targets):
    model.zero_grad()
    with meter.track(len(inputs)):
        cross_entropy(model(inputs), targets).mean().backward()


@pytest.mark.parametrize("keep_hooks", [False, True])
def test_hooks_only_during_measured_batches_and_removed(keep_hooks):
    model, (inputs, targets) = conv_model(kernel_size=3), image_batch()
    with DiversityMeter(model, sample_every=2, keep_hooks=keep_hooks) as meter:
        for expect_hooks in (True, False, True):
            model.zero_grad()
            with meter.track(len(inputs)):
                assert bool(all_hooks(model)) == expect_hooks
                cross_entropy(model(inputs), targets).mean().backward()
            assert not all_hooks(model)  # the next batch is not measured
        meter.sample_every = 1
        with meter.track(len(inputs)):
            model(inputs)
            meter.detach()
            assert not all_hooks(model)
    assert not all_hooks(model)


def test_by_default_hooks_leave_with_every_batch():
    model, (inputs, targets) = conv_model(kernel_size=3), image_batch()
    meter = DiversityMeter(model, sample_every=1)
    for _ in range(3):
        measure(meter, model, inputs, targets)
        assert not all_hooks(model)


def test_hooks_stay_between_measured_batches_and_ignore_the_model_there(monkeypatch):
    """With every batch measured, the hooks of an unchecked batch stay for the next one; what
    the model does between batches (an evaluation, a forward and backward of its own) runs no
    rule and leaves the estimate as it would have been."""
    rules_run = []
    run_rule = SqNormHooks._run_rule
    monkeypatch.setattr(SqNormHooks, "_run_rule",
                        lambda self, module, *rest: rules_run.append(module) or
                        run_rule(self, module, *rest))
    model, (inputs, targets) = conv_model(kernel_size=3), image_batch()
    other_inputs, other_targets = image_batch(3)
    estimates = []
    for between in (False, True):
        meter = DiversityMeter(model, sample_every=1, keep_hooks=True)
        measure(meter, model, inputs, targets)  # checked: its hooks go
        assert not all_hooks(model)
        measure(meter, model, inputs, targets)
        hooks = all_hooks(model)
        assert hooks
        if between:
            rules_before = len(rules_run)
            with torch.no_grad():
                model(other_inputs)
            cross_entropy(model(other_inputs), other_targets).sum().backward()
            assert len(rules_run) == rules_before
        measure(meter, model, other_inputs, other_targets)
        assert all_hooks(model) == hooks  # the same hooks, not placed anew
        estimates.append(meter.diversity())
        meter.detach()
        assert not all_hooks(model)
    assert_close(estimates[1], estimates[0])


def test_hooks_removed_before_an_unmeasured_batch():
    model, (inputs, targets) = conv_model(kernel_size=3), image_batch()
    meter = DiversityMeter(model, sample_every=1, keep_hooks=True)
    for _ in range(2):
        measure(meter, model, inputs, targets)
    assert all_hooks(model)
    meter.reset()
    meter.sample_every = 2
    measure(meter, model, inputs, targets)  # measured; the next is not
    assert not all_hooks(model)


def test_hooks_removed_with_the_meter():
    model, (inputs, targets) = conv_model(kernel_size=3), image_batch()
    with DiversityMeter(model, sample_every=1, keep_hooks=True) as meter:
        for _ in range(2):
            measure(meter, model, inputs, targets)
        assert all_hooks(model)
    assert not all_hooks(model)
    meter = DiversityMeter(model, sample_every=1, keep_hooks=True)
    for _ in range(2):
        measure(meter, model, inputs, targets)
    assert all_hooks(model)
    del meter
    gc.collect()
    assert not all_hooks(model)


@pytest.mark.parametrize("measured_before", [0, 2])
def test_hooks_removed_when_the_batch_fails(measured_before):
    model, (inputs, targets) = conv_model(kernel_size=3), image_batch()
    meter = DiversityMeter(model, sample_every=1, keep_hooks=True)
    for _ in range(measured_before):
        measure(meter, model, inputs, targets)
    with pytest.raises(RuntimeError, match="boom"):
        with meter.track(len(inputs)):
            model(inputs)
            raise RuntimeError("boom")
    assert not all_hooks(model) and meter.seen_batches == measured_before


def test_kept_hooks_hold_no_more_with_every_batch():
    """An embedding takes the hooks' general path, which hooks each call's output: kept hooks
    do not pile up the handles of earlier batches' output hooks."""
    model = torch.nn.Sequential(torch.nn.Embedding(7, 3), torch.nn.Flatten(),
                                torch.nn.Linear(12, 2))
    tokens, targets = torch.randint(0, 7, (5, 4)), torch.randint(0, 2, (5,))
    meter, held = DiversityMeter(model, sample_every=1, keep_hooks=True), []
    measure(meter, model, tokens, targets)  # checked: its hooks go
    for _ in range(4):
        measure(meter, model, tokens, targets)
        held.append(len(meter._hooks._handles))
    assert held == [held[0]] * 4
