"""Embedding, position embedding, EmbeddingBag and MultiheadAttention norms against the loop
oracle (float64), and the calls they refuse, by module path."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, loop_oracle


def token_loss(outputs, targets):  # (N, T, K), (N, T) -> (N,)
    return F.cross_entropy(outputs.transpose(1, 2), targets, reduction="none").sum(1)


def vector_loss(outputs, targets):  # (N, K), (N,) -> (N,)
    return F.cross_entropy(outputs, targets, reduction="none")


class Embedded(nn.Module):
    """Token embedding (+ position embedding called on positions) -> Linear head."""

    def __init__(self, positions=None, padding_idx=None):
        super().__init__()
        self.positions = positions  # None, "nanogpt" (arange(T)) or "gpt2" (arange(T)[None])
        self.tok = nn.Embedding(9, 4, padding_idx=padding_idx)
        self.pos = nn.Embedding(8, 4) if positions else None
        self.head = nn.Linear(4, 5)

    def forward(self, idx):
        x = self.tok(idx)
        if self.positions is not None:
            pos = torch.arange(idx.shape[1])
            x = x + self.pos(pos if self.positions == "nanogpt" else pos[None])
        return self.head(torch.tanh(x))


def token_batch(n, length, vocab=9, classes=5):
    return torch.randint(0, vocab, (n, length)), torch.randint(0, classes, (n, length))


def check_against_loop(model, loss_fn, inputs, targets):
    expected, _ = loop_oracle(model, loss_fn, inputs, targets)
    assert_close(per_sample_grad_sq_norms(model, loss_fn, inputs, targets), expected)


@pytest.mark.parametrize("padding_idx", [None, 0])
def test_embedding_matches_loop(padding_idx):
    inputs, targets = token_batch(5, 6, vocab=4)  # few distinct indices: rows repeat
    check_against_loop(Embedded(padding_idx=padding_idx), token_loss, inputs, targets)


@pytest.mark.parametrize("style", ["nanogpt", "gpt2"])
@pytest.mark.parametrize("n,length", [(3, 5), (4, 4), (5, 2), (1, 3)])
def test_position_embedding_on_positions_matches_loop(style, n, length):
    check_against_loop(Embedded(positions=style), token_loss, *token_batch(n, length))


def test_position_embedding_in_the_meter_matches_loop():
    model, data = Embedded(positions="nanogpt"), [token_batch(4, 4), token_batch(3, 6)]
    sq_norm_sum, grad_sum = 0.0, None
    for inputs, targets in data:
        sq_norms, grads = loop_oracle(model, token_loss, inputs, targets)
        sq_norm_sum += float(sq_norms.sum())
        grad_sum = grads if grad_sum is None else [a + b for a, b in zip(grad_sum, grads)]
    meter = DiversityMeter(model, reduction="sum")
    for inputs, targets in data:
        model.zero_grad()
        with meter.track(len(inputs)):
            token_loss(model(inputs), targets).sum().backward()
    assert_close(meter.diversity(), sq_norm_sum / float(sum(g.square().sum() for g in grad_sum)))


class Bagged(nn.Module):
    def __init__(self, offsets=None, **bag_kwargs):
        super().__init__()
        self.offsets = offsets
        self.bag = nn.EmbeddingBag(9, 4, **bag_kwargs)
        self.head = nn.Linear(4, 3)

    def forward(self, idx):
        return self.head(self.bag(idx, self.offsets))


def test_embedding_bag_one_bag_per_sample_matches_loop():
    inputs, targets = torch.randint(0, 9, (5, 3)), torch.randint(0, 3, (5,))
    check_against_loop(Bagged(mode="mean"), vector_loss, inputs, targets)


@pytest.mark.parametrize("include_last_offset", [False, True])
def test_embedding_bag_with_offsets_is_refused_by_name(include_last_offset):
    offsets = torch.tensor([0, 2, 3, 6]) if include_last_offset else torch.tensor([0, 2, 3])
    model = Bagged(offsets, mode="sum", include_last_offset=include_last_offset)
    with pytest.raises(ValueError, match=r"^bag \(EmbeddingBag\): .*offsets"):
        per_sample_grad_sq_norms(model, vector_loss, torch.randint(0, 9, (6,)),
                                 torch.randint(0, 3, (3,)))


def test_scale_grad_by_freq_is_refused_by_name():
    model = Embedded()
    model.tok.scale_grad_by_freq = True
    with pytest.raises(ValueError, match=r"^tok \(Embedding\): scale_grad_by_freq"):
        per_sample_grad_sq_norms(model, token_loss, *token_batch(3, 4))


def test_sparse_gradients_are_refused_by_name():
    model = Embedded()
    model.tok.sparse = True
    with pytest.raises(ValueError, match=r"^tok \(Embedding\): sparse=True"):
        per_sample_grad_sq_norms(model, token_loss, *token_batch(3, 4))
    bag = nn.Sequential(nn.EmbeddingBag(10, 4, sparse=True), nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"^0 \(EmbeddingBag\): sparse=True"):
        per_sample_grad_sq_norms(bag, vector_loss, torch.randint(0, 10, (3, 5)),
                                 torch.randint(0, 3, (3,)))


class Attention(nn.Module):
    """Linear -> MultiheadAttention (causal mask, padding mask, keyword call) -> Linear.

    ``kdim``: keys and values of another width, from a Linear of their own (separate projection
    weights instead of the packed in_proj_weight)."""

    def __init__(self, batch_first, kdim=None, **mha_kwargs):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Linear(3, 8)
        self.kv = nn.Linear(3, kdim) if kdim else None
        self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first, kdim=kdim, vdim=kdim,
                                          **mha_kwargs)
        self.head = nn.Linear(8, 2)

    def forward(self, x):  # (N, T, 3)
        h = self.embed(x)
        kv = h if self.kv is None else self.kv(x)
        h, kv = (h, kv) if self.batch_first else (h.transpose(0, 1), kv.transpose(0, 1))
        length = x.shape[1]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
        padding = (x[..., 0] > 0.5) & (torch.arange(length) > 0)  # per sample, from its data
        y, _ = self.attn(h, kv, value=kv, key_padding_mask=padding, attn_mask=causal)
        y = y if self.batch_first else y.transpose(0, 1)
        return self.head(torch.tanh(y))


def sequence_loss(outputs, targets):  # (N, T, K), (N, T, K) -> (N,)
    return (outputs - targets).square().sum((1, 2))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mha_kwargs", [{}, dict(bias=False), dict(kdim=5)])
def test_multihead_attention_matches_loop(batch_first, mha_kwargs):
    model = Attention(batch_first, **mha_kwargs)
    check_against_loop(model, sequence_loss, torch.randn(4, 5, 3), torch.randn(4, 5, 2))


def test_multihead_attention_with_frozen_projections_matches_loop():
    model = Attention(batch_first=True)
    model.attn.in_proj_weight.requires_grad_(False)
    check_against_loop(model, sequence_loss, torch.randn(3, 4, 3), torch.randn(3, 4, 2))


@pytest.mark.parametrize("mha_kwargs,match", [(dict(dropout=0.5), "dropout"),
                                              (dict(add_bias_kv=True), "add_bias_kv")])
def test_multihead_attention_options_it_cannot_replay_are_refused_by_name(mha_kwargs, match):
    model = Attention(batch_first=True, **mha_kwargs)
    with pytest.raises(ValueError, match=rf"^attn \(MultiheadAttention\): .*{match}"):
        per_sample_grad_sq_norms(model, sequence_loss, torch.randn(3, 4, 3), torch.randn(3, 4, 2))


class FirstTokenEmbedding(nn.Module):
    """An embedding of an index computed from each sample (not positions): one row per sample."""

    def __init__(self):
        super().__init__()
        self.first = nn.Embedding(9, 4)
        self.head = nn.Linear(4, 5)

    def forward(self, idx):  # (N, T) -> (N, 5)
        return self.head(torch.tanh(self.first(idx[:, 0] * 1)))


def test_embedding_of_a_computed_per_sample_index_matches_loop():
    inputs = torch.tensor([[3, 1], [3, 2], [5, 0], [1, 1]])  # first tokens not consecutive
    check_against_loop(FirstTokenEmbedding(), vector_loss, inputs, torch.randint(0, 5, (4,)))
