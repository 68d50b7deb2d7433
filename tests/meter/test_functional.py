"""Failure classes 3 and 4 of issue 26: modules re-run by ``divebatch.meter.functional``. Dropout
and stochastic depth in training mode are exact, with the masks of the real forward; a module
that mixes samples (a normalisation over the batch, with running statistics or not) is refused
by name - never a RuntimeError from torch.func."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, cross_entropy, loop_oracle


class ScaledBlock(nn.Module):
    """A layer scale that owns its parameter and re-runs its children whole: Linear, dropout,
    and stochastic depth (a random per-sample keep mask, as in timm's drop_path)."""

    def __init__(self, dim=5, p=0.4):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.drop = nn.Dropout(p)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)
        self.p = p

    def forward(self, x):
        h = self.drop(torch.tanh(self.fc(x))) * self.gamma
        if self.training:
            keep = torch.rand(x.shape[0], 1).ge(self.p).to(x.dtype) / (1 - self.p)
            h = h * keep
        return x + h


def model_with_block():
    return nn.Sequential(nn.Linear(4, 5), ScaledBlock(), nn.Linear(5, 3)).train()


def same_masks_oracle(model, inputs, targets, seed):
    """Each sample's loss of one seeded batch forward, differentiated on its own."""
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(seed)
    losses = cross_entropy(model(inputs), targets)
    return torch.stack([sum(g.square().sum() for g in torch.autograd.grad(
        losses[i], params, retain_graph=True)) for i in range(len(inputs))])


def test_dropout_and_stochastic_depth_in_a_rerun_module_are_exact():
    model, inputs, targets = model_with_block(), torch.randn(6, 4), torch.randint(0, 3, (6,))
    expected = same_masks_oracle(model, inputs, targets, seed=5)
    torch.manual_seed(5)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


def test_the_meter_keeps_the_models_masks():
    model, inputs, targets = model_with_block(), torch.randn(6, 4), torch.randint(0, 3, (6,))
    torch.manual_seed(5)
    plain = [model(inputs) for _ in range(2)]
    torch.manual_seed(5)
    with DiversityMeter(model) as meter:
        for expected in plain:
            model.zero_grad()
            with meter.track(6):
                outputs = model(inputs)
                cross_entropy(outputs, targets).mean().backward()
            assert torch.equal(outputs, expected)


class EvoNormBatch(nn.Module):
    """EvoNorm-B0: x / max(batch std, v * x + instance std) * w + b, with a running variance
    updated in training mode - a normalisation over the batch that is not nn.BatchNorm."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.v = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.register_buffer("running_var", torch.ones(1, channels, 1, 1))

    def forward(self, x):
        var = x.var(dim=(0, 2, 3), keepdim=True)
        with torch.no_grad():
            self.running_var.mul_(0.9).add_(0.1 * var)
        instance_std = (x.var(dim=(2, 3), keepdim=True) + 1e-5).sqrt()
        denominator = torch.maximum((var + 1e-5).sqrt(), self.v * x + instance_std)
        return x / denominator * self.weight + self.bias


class BatchMeanNorm(nn.Module):
    """A custom normalisation with an affine parameter and a batch mean, no buffers."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x):  # (N, C)
        return (x - x.mean(0)) * self.weight


@pytest.mark.parametrize("norm,name", [(lambda: EvoNormBatch(3), "EvoNormBatch"),
                                       (lambda: BatchMeanNorm(3), "BatchMeanNorm")])
def test_a_normalisation_over_the_batch_is_refused_by_name(norm, name):
    layer = norm()
    if name == "EvoNormBatch":
        model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), layer, nn.Flatten(),
                              nn.Linear(3 * 4 * 4, 3))
        inputs = torch.randn(5, 2, 4, 4)
    else:
        model = nn.Sequential(nn.Linear(4, 3), layer, nn.Linear(3, 3))
        inputs = torch.randn(5, 4)
    targets = torch.randint(0, 3, (5,))
    with pytest.raises(ValueError, match=rf"1 \({name}\)"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    with DiversityMeter(model) as meter, pytest.raises(ValueError, match=rf"1 \({name}\)"):
        with meter.track(5):
            F.cross_entropy(model(inputs), targets).backward()


def test_a_refused_rerun_leaves_running_statistics_alone():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), EvoNormBatch(3), nn.Flatten(),
                          nn.Linear(48, 3))
    inputs, targets = torch.randn(5, 2, 4, 4), torch.randint(0, 3, (5,))
    model(inputs)
    after_one_forward = model[1].running_var.clone()
    model[1].running_var.copy_(torch.ones_like(after_one_forward))
    with pytest.raises(ValueError):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    assert torch.equal(model[1].running_var, after_one_forward)  # the real forward's update only


class SubclassedLinear(nn.Linear):
    """An nn.Linear subclass with its own forward (as Hugging Face's FalconLinear): no rule,
    so it is re-run by torch.func."""

    def forward(self, x):
        return x @ self.weight.T + self.bias


class InPlaceResidual(nn.Module):
    """Re-run modules whose output the caller then changes in place (`out += h`)."""

    def __init__(self, mixing=False):
        super().__init__()
        self.a, self.norm, self.head = nn.Linear(4, 5), nn.RMSNorm(5), nn.Linear(5, 3)
        self.b = BatchMeanNorm(5) if mixing else SubclassedLinear(5, 5)

    def forward(self, x):
        h = self.a(x)
        out = self.b(torch.tanh(h))
        out += h
        normed = self.norm(out)
        normed.relu_()
        return self.head(normed)


def test_a_rerun_modules_output_changed_in_place_afterwards_is_exact():
    """The re-run is compared with the output as the call returned it: the refusal said the
    module mixed samples (every Falcon model was refused)."""
    model, inputs, targets = InPlaceResidual(), torch.randn(5, 4), torch.randint(0, 3, (5,))
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


def test_a_mixing_module_whose_output_is_changed_in_place_is_still_refused():
    model = InPlaceResidual(mixing=True)
    with pytest.raises(ValueError, match=r"^b \(BatchMeanNorm\): re-run one sample at a time"):
        per_sample_grad_sq_norms(model, cross_entropy, torch.randn(5, 4),
                                 torch.randint(0, 3, (5,)))


class Latents(nn.Module):
    """Learned rows broadcast over the batch by a module given the batch size as an int
    (Perceiver's latents, trainable position encodings)."""

    def __init__(self):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(2, 5))

    def forward(self, batch_size):
        return self.latents.expand(batch_size, -1, -1)


class WithLatents(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.lat, self.head = nn.Linear(4, 5), Latents(), nn.Linear(5, 3)

    def forward(self, x):
        hidden = self.lat(x.shape[0]) + torch.tanh(self.inp(x)).unsqueeze(1)  # (N, 2, 5)
        return self.head(hidden).mean(1)


def test_a_module_given_the_batch_size_as_an_int_is_exact():
    """Re-run one sample at a time with the batch size it was given, it made the whole batch's
    rows and was refused as mixing the samples."""
    model, inputs, targets = WithLatents(), torch.randn(5, 4), torch.randint(0, 3, (5,))
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


class FirstColumns(nn.Module):
    """Scales the first k columns, k given as an int that equals the batch size by chance."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.rand(6) + 0.5)

    def forward(self, x, k):
        return x[:, :k] * self.scale[:k]


class CallsFirstColumns(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.cols, self.head = nn.Linear(4, 6), FirstColumns(), nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.cols(torch.tanh(self.inp(x)), 5))


def test_an_int_that_equals_the_batch_size_by_chance_is_left_as_it_is():
    model, inputs, targets = CallsFirstColumns(), torch.randn(5, 4), torch.randint(0, 3, (5,))
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)
