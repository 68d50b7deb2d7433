"""Failure class 1 of issue 26, and mixing after a layer: a tensor with as many rows as the batch
by coincidence, and samples mixed by a layer without parameters, are refused by the random
per-sample weights (``divebatch.meter.sample_weights``) - never silently wrong."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, cross_entropy, loop_oracle


class BucketBias(nn.Module):
    """Scores of each sample's tokens plus a bias looked up by relative-position buckets: an
    Embedding called on a (T, T) matrix made inside the forward (T5's relative attention)."""

    def __init__(self, buckets=4, dim=3):
        super().__init__()
        self.token = nn.Embedding(6, dim)
        self.bias = nn.Embedding(buckets, 1)
        self.buckets = buckets

    def forward(self, x):  # (N, T) -> (N, T)
        positions = torch.arange(x.shape[1])
        relative = (positions[None, :] - positions[:, None]).clamp(0, self.buckets - 1)
        h = self.token(x)  # (N, T, d)
        scores = h @ h.transpose(1, 2) + self.bias(relative).squeeze(-1)  # (N, T, T)
        return scores.softmax(-1).sum(1)


def token_batch(n, length):
    return torch.randint(0, 6, (n, length)), torch.randint(0, length, (n,))


def test_bucket_table_with_as_many_rows_as_the_batch_is_refused():
    inputs, targets = token_batch(5, 5)  # T == N: the (T, T) index passes a shape check
    with pytest.raises(ValueError, match=r"bias \(Embedding\).*randomly weighted"):
        per_sample_grad_sq_norms(BucketBias(), cross_entropy, inputs, targets)


def test_bucket_table_refused_by_the_meter_too():
    model, (inputs, targets) = BucketBias(), token_batch(4, 4)
    with DiversityMeter(model) as meter, pytest.raises(ValueError, match=r"bias \(Embedding\)"):
        with meter.track(4):
            cross_entropy(model(inputs), targets).mean().backward()


def test_bucket_table_of_another_size_is_refused_by_shape():
    inputs, targets = token_batch(3, 5)
    with pytest.raises(ValueError, match=r"bias \(Embedding\).*not the batch"):
        per_sample_grad_sq_norms(BucketBias(), cross_entropy, inputs, targets)


class BatchCentred(nn.Module):
    """Linear -> a custom normalisation with a batch mean and no parameters -> Linear."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h - h.mean(0, keepdim=True))


def test_a_batch_mean_without_parameters_is_refused_naming_the_layer_before_it():
    inputs, targets = torch.randn(5, 4), torch.randint(0, 3, (5,))
    with pytest.raises(ValueError, match=r"fc1 \(Linear\).*mixed after it"):
        per_sample_grad_sq_norms(BatchCentred(), cross_entropy, inputs, targets)


def test_independent_samples_pass_the_weighted_check():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    inputs, targets = torch.randn(6, 4), torch.randint(0, 3, (6,))
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


def test_the_check_leaves_the_models_random_numbers_alone():
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, 3))
    inputs, targets = torch.randn(6, 4), torch.randint(0, 3, (6,))
    torch.manual_seed(3)
    per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    after_meter = torch.rand(3)
    torch.manual_seed(3)
    F.cross_entropy(model(inputs), targets).backward()
    assert torch.equal(after_meter, torch.rand(3))


class TimeFirst(nn.Module):
    """(N, T, 4) -> (T, N, 3), the layout F.ctc_loss takes; `mix` subtracts the batch mean
    between the two layers."""

    def __init__(self, mix):
        super().__init__()
        self.a, self.b, self.mix = nn.Linear(4, 6), nn.Linear(6, 3), mix

    def forward(self, x):
        h = torch.tanh(self.a(x))
        if self.mix:
            h = h - h.mean(0, keepdim=True)
        return self.b(h).transpose(0, 1)


def time_first_loss(outputs, targets):  # (N,)
    return 0.5 * (outputs.transpose(0, 1) - targets).square().flatten(1).sum(1)


def test_the_functions_weigh_the_losses_whatever_the_outputs_layout():
    """The check weighed the model's output rows: with time first it was skipped (mixing gave
    15-35 % wrong norms) or, with T == N, weighed time steps and refused an exact model."""
    inputs, targets = torch.randn(5, 5, 4), torch.randn(5, 5, 3)
    model = TimeFirst(mix=False)
    expected, _ = loop_oracle(model, time_first_loss, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, time_first_loss, inputs, targets), expected)
    with pytest.raises(ValueError, match=r"^a \(Linear\): .*randomly weighted sum"):
        per_sample_grad_sq_norms(TimeFirst(mix=True), time_first_loss, torch.randn(5, 2, 4),
                                 torch.randn(5, 2, 3))


def test_a_loss_that_mixes_the_samples_is_refused_by_the_functions():
    """A contrastive loss over the batch's own outputs: each sample's loss depends on the
    others, which the output rows' gradients cannot split (values were up to 25x off)."""
    def contrastive(outputs, targets):
        unit = F.normalize(outputs, dim=1)
        return F.cross_entropy(unit @ unit.T / 0.5, targets, reduction="none")
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"loss over pairs of samples"):
        per_sample_grad_sq_norms(model, contrastive, torch.randn(5, 4), torch.arange(5))


def test_the_meter_refuses_outputs_without_the_batch_first():
    model, inputs = TimeFirst(mix=True), torch.randn(5, 2, 4)
    with pytest.raises(ValueError, match=r"^the model's output has shape \[2, 5, 3\], whose "
                                         r"first dimension is not the batch \(5 samples\)"):
        with DiversityMeter(model).track(len(inputs)):
            time_first_loss(model(inputs), torch.randn(5, 2, 3)).mean().backward()
