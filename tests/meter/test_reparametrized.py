"""Layers whose weight is computed from other parameters: ``torch.nn.utils.parametrizations``
(weight_norm, spectral_norm, orthogonal), the older hook-based ``weight_norm`` and
``spectral_norm``, and pruning's masks (``torch.nn.utils.prune``), common in third-party code.
The meter re-runs such a layer through torch.func (``Layers.ruled``, ``has_rule``), so the
weight's computation is differentiated too, from the buffers the call started with (a spectral
norm's power iteration updates them in place).

Oracle: the per-sample gradients of one batch forward of a twin model in float64 (no layer here
mixes samples), taken at the third of three batches that the metered model and the twin run in
step; the meter must also leave gradients and buffers as a plain step leaves them.
"""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, prune, spectral_norm, weight_norm

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from divebatch.meter.owners import Layers, parameter_owners
from divebatch.meter.rules import has_rule
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, batch_oracle

# torch.nn.utils.weight_norm and spectral_norm warn that they are deprecated: third-party code
# uses them all the same
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated:FutureWarning")


def mlp(layer):
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), layer, nn.Tanh(), nn.Linear(5, 3))


def cnn(layer):
    return nn.Sequential(nn.Conv2d(3, 3, 1), nn.Tanh(), layer, nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))


def vectors(n):
    return torch.randn(n, 4), torch.randn(n, 3)


def images(n):
    return torch.randn(n, 3, 6, 6), torch.randn(n, 3)


def sequences(n):
    return torch.randn(n, 7, 4), torch.randn(n, 7, 3)


CASES = {
    "weight_norm": (lambda: mlp(parametrizations.weight_norm(nn.Linear(4, 5))), vectors),
    "weight_norm_conv": (lambda: cnn(parametrizations.weight_norm(nn.Conv2d(3, 4, 3))), images),
    "orthogonal": (lambda: mlp(parametrizations.orthogonal(nn.Linear(4, 5))), vectors),
    "spectral_norm": (lambda: mlp(parametrizations.spectral_norm(nn.Linear(4, 5))), vectors),
    "hook_weight_norm": (lambda: mlp(weight_norm(nn.Linear(4, 5))), vectors),
    "hook_weight_norm_conv": (lambda: cnn(weight_norm(nn.Conv2d(3, 4, 3))), images),
    "hook_weight_norm_sequence": (lambda: mlp(weight_norm(nn.Linear(4, 5))), sequences),
    "hook_spectral_norm": (lambda: mlp(spectral_norm(nn.Linear(4, 5))), vectors),
    "pruned": (lambda: mlp(pruned(nn.Linear(4, 5))), vectors),
    "pruned_conv": (lambda: cnn(pruned(nn.Conv2d(3, 4, 3))), images),
}


def pruned(layer):
    """``torch.nn.utils.prune``: a forward pre-hook computes ``weight`` from ``weight_orig``
    and a mask buffer (here 40 % of the weights, the smallest, and one output channel)."""
    prune.l1_unstructured(layer, "weight", amount=0.4)
    prune.ln_structured(layer, "weight", amount=1, n=2, dim=0)
    return layer


def squared_error(outputs, targets):  # (N, ...) -> (N,)
    return (outputs - targets).square().flatten(1).sum(1)


def build(case):
    torch.manual_seed(0)  # the same weights and power-iteration vectors for every build
    return CASES[case][0]()


def twin_at(twin, case):
    """A copy of ``twin`` (weights and buffers) made by state dict: the hook-based weight norm
    cannot be deep-copied after a forward."""
    copy = build(case)
    copy.load_state_dict(twin.state_dict())
    return copy


@pytest.mark.parametrize("n", [5, 3])  # 5: as many samples as the weight has rows
@pytest.mark.parametrize("case", CASES)
def test_per_sample_norms_match_the_oracle(case, n):
    inputs, targets = CASES[case][1](n)
    expected, _ = batch_oracle(build(case), squared_error, inputs, targets)
    assert_close(per_sample_grad_sq_norms(build(case), squared_error, inputs, targets), expected)


@pytest.mark.parametrize("case", CASES)
def test_the_meter_is_exact_and_leaves_gradients_and_buffers_as_a_plain_step(case):
    model, twin = build(case), build(case)
    meter = DiversityMeter(model, keep_hooks=True)
    for _ in range(3):  # the checked batch, then two on kept hooks
        inputs, targets = CASES[case][1](4)
        expected_norms, grad_sum = batch_oracle(twin_at(twin, case), squared_error, inputs,
                                                   targets)
        twin.zero_grad()
        squared_error(twin(inputs), targets).mean().backward()
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            squared_error(model(inputs), targets).mean().backward()
        for param, twin_param in zip(model.parameters(), twin.parameters()):
            assert_close(param.grad, twin_param.grad)
        for buffer, twin_buffer in zip(model.buffers(), twin.buffers()):
            assert torch.equal(buffer, twin_buffer)
    assert_close(meter.diversity(),
                 expected_norms.sum() / sum(g.square().sum() for g in grad_sum))
    meter.detach()


def test_a_layer_holding_parameters_its_rule_does_not_read_has_no_rule():
    assert has_rule(nn.Linear(4, 5)) and has_rule(nn.Linear(4, 5, bias=False))
    assert not has_rule(weight_norm(nn.Linear(4, 5)))  # weight_g and weight_v
    assert not has_rule(parametrizations.weight_norm(nn.Linear(4, 5)))  # a subclass
    assert has_rule(nn.MultiheadAttention(8, 2)) and has_rule(nn.MultiheadAttention(8, 2, kdim=4))


def test_a_parametrized_layer_holds_its_originals():
    model = mlp(parametrizations.weight_norm(nn.Linear(4, 5)))
    layers = Layers(parameter_owners(model))
    assert sorted(layers.params[model[2]]) == ["bias", "parametrizations.weight.original0",
                                               "parametrizations.weight.original1"]
    assert model[2] not in layers.ruled and model[2].parametrizations.weight not in layers.paths
