"""A model that changes between a meter's batches: layers frozen or unfrozen by a fine-tuning
schedule (followed at the next batch), a layer added or replaced (taken at the next reset()).
Oracle: the float64 loop over single samples."""

import pytest
import torch
from torch import nn

from divebatch.meter.diversity import DiversityMeter
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, cross_entropy, loop_oracle


@pytest.mark.parametrize("change", ["unfreeze", "freeze"])
def test_layers_frozen_or_unfrozen_between_batches_are_followed(change):
    """A fine-tuning schedule changes which parameters train: the meter works its layers out
    again, checks them on the next batch, and starts its sums over from it, so that S and G
    cover the same parameters (it used to keep measuring the first set, silently)."""
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    model[0].requires_grad_(change == "freeze")
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    meter = DiversityMeter(model, keep_hooks=True)
    checked = []
    for batch in range(4):
        if batch == 2:
            model[0].requires_grad_(change == "unfreeze")
        model.zero_grad()
        with meter.track(len(inputs)):
            checked.append(meter._hooks.checks)
            cross_entropy(model(inputs), targets).mean().backward()
    assert checked == [True, False, True, False]
    assert meter.measured_batches == 2  # the two batches since the change
    sq_norms, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    # the same batch twice at the same weights: S doubles and ||G||^2 quadruples
    expected = 2 * sq_norms.sum() / (4 * sum(g.square().sum() for g in grad_sum))
    assert_close(meter.diversity(), expected)


def test_a_layer_added_to_the_model_is_measured_from_the_next_reset():
    """A new head attached to a trained body (transfer learning) after the meter was made: the
    meter takes the model's parameters again at reset()."""
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    meter = DiversityMeter(model, keep_hooks=True)
    with meter.track(len(inputs)):
        cross_entropy(model(inputs), targets).mean().backward()
    model[2] = nn.Linear(6, 3)
    for _ in range(2):
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
    sq_norms, grad_sum = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(meter.diversity(), sq_norms.sum() / sum(g.square().sum() for g in grad_sum))


def test_a_batchnorm_layer_added_to_the_model_is_refused_from_the_next_reset():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    meter = DiversityMeter(model)
    model[2] = nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 3))
    meter.reset()
    with pytest.raises(ValueError, match=r"^BatchNorm in training mode \(2\.0\)"):
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
