"""When the meter checks the split into samples (``divebatch.meter.checked_calls``,
``DiversityMeter.recheck``), and what its refusals name as the cause."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divebatch.meter.diversity import DiversityMeter, gradient_diversity, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import cross_entropy


def test_a_parameter_gradient_hook_or_clipping_inside_track_is_named_as_the_cause():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    model[0].weight.register_hook(lambda grad: grad * 0.5)
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    with pytest.raises(ValueError, match=r"^parameter 0\.weight: .* the parameter has a "
                                         r"gradient hook \(register_hook\)"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"clip_grad_norm_: clip after the block"):
        with DiversityMeter(model).track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.01)


class LaterTie(nn.Module):
    """Two Linear layers; ``tie`` adds a direct use of the head's weight (F.linear)."""

    def __init__(self):
        super().__init__()
        self.a, self.head, self.tie = nn.Linear(4, 4), nn.Linear(4, 3), False

    def forward(self, x):
        h = torch.tanh(self.a(x))
        return self.head(h) + (0.1 * F.linear(h, self.head.weight) if self.tie else 0.0)


def measure_epoch(meter, model, inputs, targets):
    meter.reset()
    model.zero_grad()
    with meter.track(len(inputs)):
        cross_entropy(model(inputs), targets).mean().backward()


def test_recheck_and_a_new_gradient_hook_check_the_split_again():
    """A use of the parameters that starts after the checked batch (a tie switched on, a
    gradient hook added by a fine-tuning schedule) gave a silently wrong Delta_hat (7-22 %)."""
    model, inputs, targets = LaterTie(), torch.randn(5, 4), torch.randint(0, 3, (5,))
    meter = DiversityMeter(model, keep_hooks=True)
    measure_epoch(meter, model, inputs, targets)
    model.tie = True
    measure_epoch(meter, model, inputs, targets)  # unchecked: the tie goes unseen
    meter.recheck()
    with pytest.raises(ValueError, match=r"^parameter head\.weight: .*F\.linear"):
        measure_epoch(meter, model, inputs, targets)
    model.tie = False
    measure_epoch(meter, model, inputs, targets)
    model.a.weight.register_hook(lambda grad: grad * 0.5)
    with pytest.raises(ValueError, match=r"^parameter a\.weight: .*gradient hook"):
        measure_epoch(meter, model, inputs, targets)


def test_a_zero_gradient_has_diversity_zero_from_the_function_and_the_meter():
    model = nn.Linear(3, 2)
    def loss_fn(outputs, targets):
        return (outputs * 0.0).sum(1)
    inputs = torch.randn(4, 3)
    assert gradient_diversity(model, loss_fn, inputs, None) == 0.0  # NaN before
    meter = DiversityMeter(model)
    model.zero_grad()
    with meter.track(4):
        loss_fn(model(inputs), None).mean().backward()
    assert meter.diversity() == 0.0
