"""The normalisation rules (divebatch.meter.rules.normalisation) on their own: both layouts'
branches agree, and GroupNorm's and LayerNorm's statistics are recomputed when autograd did not
save them.
Whole models with these layers, in both layouts, meet the per-sample loop in
tests/meter/test_diversity.py."""

import math

import pytest
import torch
from torch import nn

from divebatch.meter import kernels
from divebatch.meter.diversity import per_sample_grad_sq_norms
from divebatch.meter.rules import normalisation
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, loop_oracle


def squared_error(outputs, targets):
    return (outputs - targets).square().sum(1)


def channels_last(*tensors):
    return [t.detach().contiguous(memory_format=torch.channels_last) for t in tensors]


def test_group_norm_rule_reads_a_channels_last_pair_in_its_own_order():
    norm, x, grad_out = nn.GroupNorm(2, 4), torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    _, mean, rstd = normalisation._group_norm_capture(norm, (x,), {}, norm(x.requires_grad_()))
    x_last, grad_last = channels_last(x, grad_out)
    assert kernels.is_channels_last(x_last)
    with torch.no_grad():
        assert_close(normalisation._group_norm_sq_norms(norm, (x_last, mean, rstd), grad_last),
                     normalisation._group_norm_sq_norms(norm, (x.detach(), mean, rstd), grad_out))


def test_batch_norm_rule_reads_a_channels_last_pair_in_its_own_order():
    norm, x, grad_out = nn.BatchNorm2d(4).eval(), torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    with torch.no_grad():
        assert_close(normalisation._batch_norm_sq_norms(norm, *channels_last(x, grad_out)),
                     normalisation._batch_norm_sq_norms(norm, x, grad_out))


def test_group_norm_rule_without_saved_statistics():
    """The GroupNorm rule recomputes mean and 1/std when autograd did not save them."""
    norm, x, grad_out = nn.GroupNorm(2, 4), torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    output = norm(x.requires_grad_())
    saved = normalisation._group_norm_capture(norm, (x,), {}, output)
    assert saved[1] is not None
    assert_close(normalisation._group_norm_sq_norms(norm, (x, None, None), grad_out),
                 normalisation._group_norm_sq_norms(norm, saved, grad_out))


@pytest.mark.parametrize("shape, normalized", [((3, 5), (5,)), ((3, 4, 5), (5,)),
                                               ((3, 2, 4, 5), (4, 5))])
def test_layer_norm_rule_with_and_without_saved_statistics(shape, normalized):
    """autograd's saved mean and 1/std (one per position) give the rule's x_hat; without them
    it is recomputed, with the same norms."""
    norm, x, grad_out = nn.LayerNorm(normalized), torch.randn(shape), torch.randn(shape)
    output = norm(x.requires_grad_())
    saved = normalisation._layer_norm_capture(norm, (x,), {}, output)
    assert saved[1] is not None and saved[1].shape == shape[:-len(normalized)] + (1,) * len(
        normalized)
    with torch.no_grad():
        assert_close(normalisation._layer_norm_sq_norms(norm, saved, grad_out),
                     normalisation._layer_norm_sq_norms(norm, (x, None, None), grad_out))


def test_layer_norm_capture_without_its_backward_node():
    norm, x = nn.LayerNorm(5, elementwise_affine=False), torch.randn(3, 5)
    assert normalisation._layer_norm_capture(norm, (x,), {}, norm(x))[1:] == (None, None)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("track_running_stats", [False, True])
@pytest.mark.parametrize("norm_class, shape", [(nn.InstanceNorm1d, (5, 3, 6)),
                                               (nn.InstanceNorm2d, (5, 3, 4, 4)),
                                               (nn.InstanceNorm3d, (5, 3, 2, 3, 3))])
def test_instance_norm_is_exact_with_or_without_running_statistics(norm_class, shape,
                                                                   track_running_stats,
                                                                   training):
    """With running statistics in training mode the re-run by torch.func failed on their
    in-place update, and the meter refused a layer the guide calls exact."""
    norm = norm_class(3, affine=True, track_running_stats=track_running_stats)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)
    model = nn.Sequential(norm, nn.Flatten(), nn.Linear(math.prod(shape[1:]), 2))
    inputs, targets = torch.randn(*shape), torch.randn(shape[0], 2)
    model(inputs * 2 + 1)  # running statistics away from (0, 1)
    model.train(training)
    expected, _ = loop_oracle(model, squared_error, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, squared_error, inputs, targets), expected)


@pytest.mark.parametrize("chunk_elements", [1, 2 * 4 * 25, 10 ** 6])
def test_group_norm_in_chunks_of_samples_meets_the_loop(chunk_elements, monkeypatch):
    """The per-channel dot products a sample, two samples or the whole batch at a time (each
    sample's dy holds 4 x 25 elements here): the loop's norms every time."""
    monkeypatch.setattr(normalisation, "PRODUCT_CHUNK_ELEMENTS", chunk_elements)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Flatten(),
                          nn.Linear(100, 2))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5), model[1].bias.uniform_(-0.5, 0.5)
    inputs, targets = torch.randn(5, 2, 5, 5), torch.randn(5, 2)
    expected, _ = loop_oracle(model, squared_error, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, squared_error, inputs, targets), expected)


def test_channel_dots_take_one_product_when_autograd_records_the_rule(monkeypatch):
    monkeypatch.setattr(normalisation, "PRODUCT_CHUNK_ELEMENTS", 1)
    grad_out, x = torch.randn(3, 2, 4), torch.randn(3, 2, 4, requires_grad=True)
    dots = normalisation._channel_dots(grad_out, x)  # out= would refuse a recorded product
    assert dots.grad_fn is not None
    assert_close(dots, (grad_out * x).sum(2))
