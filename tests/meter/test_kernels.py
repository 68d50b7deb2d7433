"""The rules' shared helpers (divebatch.meter.kernels): chunks of samples keep a rule's
temporaries within TEMP_BUDGET times its layer's input or output, or MIN_TEMP_ELEMENTS if that
is more; layouts told apart."""

import torch

from divebatch.meter import kernels


def test_temporaries_beyond_the_budget_and_the_floor_are_split_into_equal_chunks():
    x = torch.zeros(128, 32, 8, 8)  # the digits CNN's 32 -> 64 input at B = 128
    per_sample = 8_320  # its unfold-Gram path: patches, two Gram matrices, the padded input
    chunks = kernels.sample_chunks((x,), per_sample)
    sizes = [len(c[0]) for c in chunks]
    assert len(chunks) > 1 and sum(sizes) == 128 and max(sizes) - min(sizes) <= 1
    budget = max(kernels.TEMP_BUDGET * x.numel(), kernels.MIN_TEMP_ELEMENTS)
    assert all(size * per_sample <= budget * (1 + kernels.CHUNK_SLACK) for size in sizes)
    assert torch.equal(torch.cat([c[0] for c in chunks]), x)


def test_temporaries_just_over_the_floor_are_not_split():
    """The same layer at B = 32 is 1.6 % over the floor: one chunk, not 31 samples and 1."""
    x = torch.zeros(32, 32, 8, 8)
    assert 32 * 8_320 > kernels.MIN_TEMP_ELEMENTS
    (only,) = kernels.sample_chunks((x,), 8_320)
    assert only[0] is x


def test_tiny_temporaries_are_not_split():
    x = torch.zeros(32, 64)
    (only,) = kernels.sample_chunks((x,), 100)
    assert only[0] is x


def test_layouts_are_told_apart():
    x = torch.randn(2, 3, 4, 4)
    assert not kernels.is_channels_last(x)
    assert kernels.is_channels_last(x.contiguous(memory_format=torch.channels_last))
    assert not kernels.is_channels_last(torch.randn(2, 1, 4, 4))  # one channel: both layouts


def test_a_rules_norms_add_up_in_the_first_tensor():
    first, second, third = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), torch.ones(2)
    assert kernels.total([first, second, third]) is first
    assert first.tolist() == [5.0, 7.0]
    assert kernels.total([]) == 0
