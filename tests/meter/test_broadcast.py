"""Failure class 2 of issue 26: the meter never changes what the model computes. Calls that every
sample shares have their output expanded over the batch (``divebatch.meter.broadcast``) only
where that leaves the model's outputs as they were; otherwise they are refused by name."""

import pytest
import torch
from torch import nn

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, cross_entropy, loop_oracle


class PatchTokens(nn.Module):
    """An image model with position ids of shape (1, T) in a buffer (CLIP's vision embeddings):
    the position table's output (1, T, d) meets the (N, T, d) patch tokens; ``use`` says how."""

    def __init__(self, use="broadcast", patches=4, dim=3):
        super().__init__()
        self.use = use
        self.patch = nn.Conv2d(2, dim, kernel_size=2, stride=2)
        self.position = nn.Embedding(patches, dim)
        self.register_buffer("position_ids", torch.arange(patches)[None])  # (1, T)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):  # (N, 2, 4, 4) -> (N, 3)
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # (N, T, d)
        table = self.position(self.position_ids)  # (1, T, d)
        if self.use == "broadcast":
            tokens = tokens + table
        elif self.use == "first row":
            tokens = tokens + table[0]
        else:  # "summed over its first dimension"
            tokens = tokens + table.sum(0)
        return self.head(tokens.mean(1))


def image_batch(n=4):
    return torch.randn(n, 2, 4, 4), torch.randint(0, 3, (n,))


@pytest.mark.parametrize("n", [4, 3, 1])  # 4: as many samples as positions
def test_position_table_broadcast_over_an_image_batch_matches_loop(n):
    model, (inputs, targets) = PatchTokens(), image_batch(n)
    expected, _ = loop_oracle(model, cross_entropy, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, cross_entropy, inputs, targets), expected)


def test_outputs_with_the_meter_equal_outputs_without():
    model, (inputs, targets) = PatchTokens(), image_batch()
    plain = model(inputs)
    with DiversityMeter(model) as meter:
        for _ in range(2):  # the checked batch, then an ordinary one
            model.zero_grad()
            with meter.track(len(inputs)):
                outputs = model(inputs)
                cross_entropy(outputs, targets).mean().backward()
            assert torch.equal(outputs, plain)


@pytest.mark.parametrize("use,reason", [("first row", "randomly weighted"),
                                        ("summed", "outputs differ")])
def test_a_table_not_broadcast_against_the_batch_is_refused_and_outputs_stay(use, reason):
    model, (inputs, targets) = PatchTokens(use), image_batch()
    plain = model(inputs)
    with pytest.raises(ValueError, match=rf"position \(Embedding\).*{reason}|{reason}"):
        per_sample_grad_sq_norms(model, cross_entropy, inputs, targets)
    assert torch.equal(model(inputs), plain)


class Reshaped(nn.Module):
    """A position table whose (1, T, d) output is reshaped to (T, d): expanding it breaks the
    forward, which is refused naming the table."""

    def __init__(self):
        super().__init__()
        self.position = nn.Embedding(4, 3)
        self.head = nn.Linear(3, 3)

    def forward(self, x):  # (N, 4, 3)
        table = self.position(torch.arange(4)[None]).view(4, 3)
        return self.head((x + table).mean(1))


def test_a_forward_that_fails_on_the_expansion_is_refused_by_name():
    inputs, targets = torch.randn(5, 4, 3), torch.randint(0, 3, (5,))
    with pytest.raises(ValueError, match=r"position \(Embedding\).*failed"):
        per_sample_grad_sq_norms(Reshaped(), cross_entropy, inputs, targets)
