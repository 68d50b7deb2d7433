"""Per-sample gradient norms, gradient diversity and DiversityMeter against a slow loop oracle.

The oracle runs one sample at a time through ``torch.autograd.grad``: obviously correct, and
independent of the hooks and per-layer rules under test. Everything is float64 so that the
rules must agree to 1e-8 relative error.
"""

import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divebatch.meter import diversity, kernels
from divebatch.meter.diversity import DiversityMeter, gradient_diversity, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import (CONV_CASES, assert_close, conv_model, cross_entropy,
                                   image_batch, loop_oracle)


def sequence_loss(outputs, targets):  # (N, T, K), (N, T, K) -> (N,)
    return (outputs - targets).square().sum((1, 2))


class Scale(nn.Module):
    """A layer without a rule: its own parameter takes the torch.func path."""

    def __init__(self, channels):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(channels))

    def forward(self, x):  # (N, C, ...) -> (N, C, ...)
        return x * self.scale.view(1, -1, *([1] * (x.dim() - 2)))


class ScaledLinear(nn.Module):
    """A parameter of its own (torch.func) around a child that keeps its Linear rule."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.gain = nn.Parameter(torch.randn(d_out))

    def forward(self, x):
        return torch.tanh(self.linear(x)) * self.gain


def sequence_model():
    return nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3))


def sequence_batch(n=4):
    return torch.randn(n, 7, 6), torch.randn(n, 7, 3)


def group_norm_model():
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.GroupNorm(3, 6), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 16, 5))


def batch_norm_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 6),
                         nn.BatchNorm1d(6), nn.Linear(6, 5)).eval()


def channels_last_image_batch():
    inputs, targets = image_batch()
    return inputs.contiguous(memory_format=torch.channels_last), targets


MODELS = {
    "linear_2d": (lambda: nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4)),
                  lambda: (torch.randn(6, 6), torch.randint(0, 4, (6,))), cross_entropy),
    "linear_sequence": (sequence_model, sequence_batch, sequence_loss),
    "layer_norm_2d": (lambda: nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 4)),
                      lambda: (torch.randn(6, 6), torch.randint(0, 4, (6,))), cross_entropy),
    "layer_norm_image": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm([4, 4]),
                                               nn.Flatten(), nn.Linear(64, 5),
                                               nn.LayerNorm(5, bias=False), nn.Linear(5, 5)),
                         image_batch, cross_entropy),
    "group_norm": (group_norm_model, image_batch, cross_entropy),
    "group_norm_channels_last": (
        lambda: group_norm_model().to(memory_format=torch.channels_last),
        channels_last_image_batch, cross_entropy),
    "batch_norm_eval": (batch_norm_model, image_batch, cross_entropy),
    "batch_norm_eval_channels_last": (
        lambda: batch_norm_model().to(memory_format=torch.channels_last),
        channels_last_image_batch, cross_entropy),
    "torch_func_fallback": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), Scale(4), nn.Flatten(2),
                                                  nn.Conv1d(4, 2, 2), nn.Flatten(),
                                                  ScaledLinear(2 * 7, 5)),
                            lambda: (torch.randn(5, 3, 4, 6), torch.randint(0, 5, (5,))),
                            cross_entropy),
    "torch_func_layers": (lambda: nn.Sequential(nn.ConvTranspose2d(3, 4, 2, stride=2),
                                                nn.PReLU(4), nn.InstanceNorm2d(4, affine=True),
                                                nn.Flatten(), nn.Linear(4 * 8 * 12, 5)),
                          lambda: (torch.randn(5, 3, 4, 6), torch.randint(0, 5, (5,))),
                          cross_entropy),
    **{f"conv_{name}": (lambda kw=kw: conv_model(**kw), image_batch, cross_entropy)
       for name, kw in CONV_CASES.items()},
}


@pytest.fixture(params=["auto", "gram", "explicit"])
def gram_choice(request, monkeypatch):
    """Run a test with the cost model's choice, and with each branch forced."""
    if request.param != "auto":
        forced = request.param == "gram"
        monkeypatch.setattr(kernels, "gram_is_cheaper", lambda gram, explicit: forced)
    return request.param


@pytest.mark.parametrize("name", MODELS)
def test_per_sample_norms_match_loop(name, gram_choice):
    make_model, make_batch, loss_fn = MODELS[name]
    model, (inputs, targets) = make_model(), make_batch()
    expected, _ = loop_oracle(model, loss_fn, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, loss_fn, inputs, targets), expected)


@pytest.mark.parametrize("name", ["linear_sequence", "torch_func_fallback", "conv_strided",
                                  "conv_grouped", "batch_norm_eval"])
def test_each_layer_alone_matches_loop(name):
    """Each rule on its own: every other module's parameters frozen."""
    make_model, make_batch, loss_fn = MODELS[name]
    model, (inputs, targets) = make_model(), make_batch()
    layers = [m for m in model.modules() if list(m.parameters(recurse=False))]
    for layer in layers:
        for module in layers:
            module.requires_grad_(False)
            for param in module.parameters(recurse=False):
                param.requires_grad_(module is layer)
        expected, _ = loop_oracle(model, loss_fn, inputs, targets)
        assert_close(per_sample_grad_sq_norms(model, loss_fn, inputs, targets), expected)


def test_frozen_parameters_are_ignored(gram_choice):
    model = conv_model(kernel_size=3, padding=1)
    model[0].requires_grad_(False)
    model[3].weight.requires_grad_(False)  # bias stays trainable
    inputs, targets = image_batch()
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


def test_chunked_temporaries_match_loop(gram_choice, monkeypatch):
    """Wide layers on small inputs: temporaries exceed the activations and are chunked (without
    the floor that keeps a small model's layers whole)."""
    monkeypatch.setattr(kernels, "MIN_TEMP_ELEMENTS", 0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 32, 3),
                          nn.Flatten(), nn.Linear(32 * 16, 5))
    inputs, targets = image_batch(n=7)
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


def test_param_grad_untouched():
    model = conv_model(kernel_size=3)
    inputs, targets = image_batch()
    marker = torch.full_like(model[0].weight, 7.0)
    model[0].weight.grad = marker.clone()
    per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    assert torch.equal(model[0].weight.grad, marker)
    assert all(p.grad is None for p in model.parameters() if p is not model[0].weight)


def test_gradient_diversity_matches_loop():
    make_model, make_batch, loss_fn = MODELS["conv_padded"]
    model, (inputs, targets) = make_model(), make_batch()
    sq_norms, grad_sum = loop_oracle(model, loss_fn, inputs, targets)
    expected = sq_norms.sum() / sum(g.square().sum() for g in grad_sum)
    assert_close(gradient_diversity(model, loss_fn, inputs, targets), expected)


def linear_score(outputs, targets):  # g_i = targets_i * x_i for a bias-free Linear(d, 1)
    return outputs.squeeze(1) * targets


def test_diversity_of_identical_gradients_is_one_over_n():
    model = nn.Linear(3, 1, bias=False)
    inputs = torch.tensor([[1.0, -2.0, 0.5]]).repeat(8, 1)
    assert gradient_diversity(model, linear_score, inputs, torch.ones(8)) == pytest.approx(1 / 8)


def test_diversity_of_orthogonal_gradients_is_one():
    model = nn.Linear(4, 1, bias=False)
    inputs, weights = torch.eye(4), torch.tensor([1.0, -3.0, 0.5, 2.0])
    assert gradient_diversity(model, linear_score, inputs, weights) == pytest.approx(1.0)


def test_loss_must_be_per_sample():
    model, (inputs, targets) = MODELS["linear_2d"][0](), MODELS["linear_2d"][1]()
    with pytest.raises(ValueError, match="per-sample losses"):
        per_sample_grad_sq_norms(model, lambda o, t: F.cross_entropy(o, t), inputs, targets)


def test_layer_called_twice_raises():
    layer = nn.Linear(4, 4)
    model = nn.Sequential(layer, nn.Tanh(), layer)
    with pytest.raises(ValueError, match="0 .Linear. was called again"):
        per_sample_grad_sq_norms(model, lambda o, t: o.sum(1), torch.randn(3, 4), None)


def test_batchnorm_in_training_mode_raises_unless_allowed():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 5))
    inputs, targets = image_batch()
    with pytest.raises(ValueError, match="BatchNorm in training mode"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    with pytest.raises(ValueError, match="per-sample gradients are not defined"):
        DiversityMeter(model)
    norms = per_sample_grad_sq_norms(model, cross_entropy, inputs, targets, allow_batchnorm=True)
    assert norms.shape == (5,) and torch.isfinite(norms).all()
    meter = DiversityMeter(model, sample_every=1, allow_batchnorm=True)
    assert meter.approximate
    model.eval()
    assert not DiversityMeter(model).approximate


# ----------------------------------------------------------------------------- DiversityMeter

def batches(sizes):
    return [image_batch(n) for n in sizes]


def train_with_meter(meter, model, data, reduction, optimizer=None):
    for inputs, targets in data:
        model.zero_grad()
        with meter.track(len(inputs)):
            losses = cross_entropy(model(inputs), targets)
            (losses.mean() if reduction == "mean" else losses.sum()).backward()
        if optimizer is not None:
            optimizer.step()
    return meter.diversity()


def oracle_over_batches(model, data, measured, optimizer=None, estimator="count"):
    """Delta_hat from the loop oracle: S over measured batches scaled by seen/measured samples
    ("count") or by sum ||G_b||^2 over all batches / over measured batches ("ratio")."""
    sq_norm_sum, grad_sum, seen, measured_samples = 0.0, None, 0, 0
    proxy_seen = proxy_measured = 0.0
    for index, (inputs, targets) in enumerate(data):
        sq_norms, batch_grad = loop_oracle(model, cross_entropy, inputs, targets)
        proxy = float(sum(g.square().sum() for g in batch_grad))  # ||G_b||^2
        if index in measured:
            sq_norm_sum += float(sq_norms.sum())
            measured_samples += len(inputs)
            proxy_measured += proxy
        seen += len(inputs)
        proxy_seen += proxy
        grad_sum = (batch_grad if grad_sum is None
                    else [a + b for a, b in zip(grad_sum, batch_grad)])
        if optimizer is not None:
            for param, g in zip(model.parameters(), batch_grad):
                param.grad = g / len(inputs)
            optimizer.step()
    sq_norm_estimate = sq_norm_sum * (seen / measured_samples if estimator == "count"
                                      else proxy_seen / proxy_measured)
    return sq_norm_estimate / (float(sum(g.square().sum() for g in grad_sum)) + diversity.EPS)


@pytest.mark.parametrize("pending", [1, 2, diversity.PENDING_BATCHES])
def test_meter_every_batch_equals_oracle_at_fixed_weights(pending, monkeypatch):
    """Also when S takes the batches' norms one, two or many at a time (their sizes differ,
    and so do their weights under a mean loss)."""
    monkeypatch.setattr(diversity, "PENDING_BATCHES", pending)
    model, data = conv_model(kernel_size=3, padding=1), batches([5, 3, 4])
    expected = oracle_over_batches(model, data, measured={0, 1, 2})
    meter = DiversityMeter(model, sample_every=1)
    assert_close(train_with_meter(meter, model, data, "mean"), expected)
    assert (meter.seen_batches, meter.measured_batches, meter.samples_seen) == (3, 3, 12)


@pytest.mark.parametrize("keep_hooks", [False, True])
def test_meter_every_batch_equals_oracle_along_sgd_trajectory(keep_hooks):
    """keep_hooks: the last two batches reuse the hooks the one before them left."""
    data = batches([4, 6, 5, 3])
    oracle_model = conv_model(kernel_size=3, stride=2, padding=1)
    model = conv_model(kernel_size=3, stride=2, padding=1)
    model.load_state_dict(oracle_model.state_dict())
    expected = oracle_over_batches(oracle_model, data, measured={0, 1, 2, 3},
                                   optimizer=torch.optim.SGD(oracle_model.parameters(), lr=0.5))
    meter = DiversityMeter(model, sample_every=1, keep_hooks=keep_hooks)
    delta_hat = train_with_meter(meter, model, data, "mean",
                                 optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    assert_close(delta_hat, expected)


def test_mean_and_sum_reduction_give_the_same_diversity():
    data = batches([5, 2, 4])
    mean_model, sum_model = conv_model(kernel_size=3), conv_model(kernel_size=3)
    sum_model.load_state_dict(mean_model.state_dict())
    mean_delta = train_with_meter(DiversityMeter(mean_model, sample_every=1), mean_model, data,
                                  "mean")
    sum_delta = train_with_meter(DiversityMeter(sum_model, sample_every=1, reduction="sum"),
                                 sum_model, data, "sum")
    assert_close(sum_delta, mean_delta)


@pytest.mark.parametrize("estimator", ["count", "ratio"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_sampled_meter_equals_scaled_estimate(estimator, reduction):
    model, data = conv_model(kernel_size=3), batches([5, 3, 4, 2, 6, 4, 3])
    expected = oracle_over_batches(model, data, measured={0, 3, 6}, estimator=estimator)
    meter = DiversityMeter(model, sample_every=3, estimator=estimator, reduction=reduction)
    assert_close(train_with_meter(meter, model, data, reduction), expected)
    assert (meter.seen_batches, meter.measured_batches) == (7, 3)
    assert (meter.samples_seen, meter.samples_measured) == (27, 10)


def test_ratio_estimator_reads_the_accumulated_gradient_of_micro_batches():
    model, data = conv_model(kernel_size=3), batches([6, 4, 5])
    meter = DiversityMeter(model, sample_every=2)
    for inputs, targets in data:
        model.zero_grad()
        with meter.track(len(inputs)):
            for part in (slice(0, 3), slice(3, None)):
                (cross_entropy(model(inputs[part]), targets[part]).sum() / len(inputs)).backward()
    assert_close(meter.diversity(), oracle_over_batches(model, data, {0, 2}, estimator="ratio"))


def test_reset_starts_a_new_estimate():
    model, data = conv_model(kernel_size=3), batches([4, 3])
    meter = DiversityMeter(model, sample_every=1)
    train_with_meter(meter, model, batches([6]), "mean")
    meter.reset()
    assert math.isnan(meter.diversity())  # before any measured batch
    assert_close(train_with_meter(meter, model, data, "mean"),
                 oracle_over_batches(model, data, measured={0, 1}))


def test_micro_batches_in_one_track_equal_one_pass():
    model, (inputs, targets) = conv_model(kernel_size=3), image_batch(n=6)
    whole = train_with_meter(DiversityMeter(model, sample_every=1), model, [(inputs, targets)],
                             "mean")
    meter = DiversityMeter(model, sample_every=1)
    model.zero_grad()
    with meter.track(6):
        for part in (slice(0, 4), slice(4, 6)):
            (cross_entropy(model(inputs[part]), targets[part]).sum() / 6).backward()
    assert_close(meter.diversity(), whole)


def test_seconds_count_the_rules_and_only_the_excess_of_fused_ones(monkeypatch):
    """A clock that moves one second per layer rule and stands still otherwise: seconds counts
    every rule of a measured batch, a fused Conv2d's at its share beyond the weight gradient
    that autograd skipped, nothing of an unmeasured batch, and reset() forgets it. The first
    measured batch is also checked (divebatch.meter.sample_weights runs every rule again with
    random per-sample weights): that is the meter's work too, and counts."""
    from divebatch.meter import hooks as sq_norm_hooks
    from divebatch.meter.rules import conv as conv_rules
    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(kernels, "gram_is_cheaper", lambda gram, explicit: False)
    rule_sq_norms = sq_norm_hooks.SqNormHooks._rule_sq_norms
    on_output_grad = sq_norm_hooks.SqNormHooks.on_output_grad

    def one_second_rule(*call):  # a rule, on the general or the direct path
        now[0] += 1.0
        return rule_sq_norms(*call)

    def one_second_check(self, module, grad_out):  # the weighted check's backward, per layer
        if self.weighing is not None and self.weighing.running:
            now[0] += 1.0
        on_output_grad(self, module, grad_out)
    monkeypatch.setattr(sq_norm_hooks.SqNormHooks, "_rule_sq_norms",
                        staticmethod(one_second_rule))
    monkeypatch.setattr(sq_norm_hooks.SqNormHooks, "on_output_grad", one_second_check)
    model, (inputs, targets) = conv_model(kernel_size=3), image_batch()
    stem, fused = (conv_rules._weight_costs(conv, len(inputs), channels, size, size)
                   for conv, channels, size in ((model[0], 3, 6), (model[3], 4, 4)))
    per_batch = 2 + sum(1 - costs.weight_grad / costs.explicit  # GroupNorm, head; fused convs
                        for costs in (stem, fused))
    meter = DiversityMeter(model, sample_every=2)
    for _ in range(3):  # measured, unmeasured, measured
        model.zero_grad()
        with meter.track(len(inputs)):
            cross_entropy(model(inputs), targets).mean().backward()
    assert meter.seconds == pytest.approx((2 + 1) * per_batch)  # two batches, one check
    meter.reset()
    assert meter.seconds == 0.0


def test_running_sums_are_what_the_meter_keeps():
    model = conv_model(kernel_size=3)
    sums = DiversityMeter(model).running_sums
    assert [t.shape for t in sums[3:]] == [p.shape for p in model.parameters()]
    assert all(t.dim() == 0 for t in sums[:3])


@pytest.mark.parametrize("kwargs", [dict(sample_every=0), dict(sample_every=1.5),
                                    dict(reduction="max"), dict(estimator="median")])
def test_meter_rejects_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        DiversityMeter(nn.Linear(2, 2), **kwargs)
