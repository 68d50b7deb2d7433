"""The meter on building blocks that third-party PyTorch code uses and our models do not:
``nn.TransformerEncoderLayer`` and ``nn.TransformerDecoderLayer``, ``nn.Bilinear``, LoRA adapters
around a frozen Linear, an Embedding with ``max_norm`` (which renormalises its rows in place),
RMSNorm, Conv3d, GLU, squeeze-and-excitation. Exact, in float64: per-sample norms against each
sample's gradient from one batch forward, and the meter's third measured batch (kept hooks)
against the same, with the gradients of a plain step. A sequence-first transformer layer is
refused by name (its outputs have the batch second).
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import assert_close, batch_oracle


class Bilinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.context = nn.Linear(4, 3)
        self.bilinear = nn.Bilinear(4, 3, 2)

    def forward(self, x):
        return self.bilinear(x, torch.tanh(self.context(x)))


class LoRA(nn.Module):
    """A frozen base layer plus a trainable low-rank update, as peft builds it."""

    def __init__(self, base, rank=2):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.normal_(self.lora_B.weight)

    def forward(self, x):
        return self.base(x) + 0.5 * self.lora_B(self.lora_A(x))


class MaxNormEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4, max_norm=1.0)
        self.head = nn.Linear(4, 3)

    def forward(self, tokens):
        return self.head(self.embed(tokens).mean(1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 2, 1)
        self.expand = nn.Conv2d(channels // 2, channels, 1)

    def forward(self, x):
        scale = self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(scale)


class Decoder(nn.Module):
    """A decoder layer attending to an encoding of the same sequence (self and cross
    attention, causal mask)."""

    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(8, 8)
        self.decode = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.decode(x, torch.tanh(self.encode(x)), tgt_mask=mask, tgt_is_causal=True)


def encoder_layer(**options):
    return nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, **options)


def vectors(n):
    return torch.randn(n, 4), torch.randn(n, 3)


def sequences(n, width=8):
    return torch.randn(n, 6, width), torch.randn(n, 6, width)


CASES = {
    "transformer_encoder": (lambda: nn.Sequential(encoder_layer(), nn.Linear(8, 8)), sequences),
    "transformer_encoder_norm_first": (lambda: nn.Sequential(encoder_layer(norm_first=True),
                                                             nn.Linear(8, 8)), sequences),
    "transformer_encoder_eval": (lambda: nn.Sequential(encoder_layer(), nn.Linear(8, 8)).eval(),
                                 sequences),
    "transformer_decoder": (Decoder, sequences),
    "bilinear": (Bilinear, lambda n: (torch.randn(n, 4), torch.randn(n, 2))),
    "lora": (lambda: nn.Sequential(LoRA(nn.Linear(4, 6)), nn.Tanh(), LoRA(nn.Linear(6, 3))),
             vectors),
    "lora_sequence": (lambda: nn.Sequential(LoRA(nn.Linear(8, 6)), nn.Tanh(),
                                            LoRA(nn.Linear(6, 8))), sequences),
    "embedding_max_norm": (MaxNormEmbedding,
                           lambda n: (torch.randint(0, 10, (n, 4)), torch.randn(n, 3))),
    "rms_norm": (lambda: nn.Sequential(nn.Linear(4, 5), nn.RMSNorm(5), nn.Linear(5, 3)), vectors),
    "glu": (lambda: nn.Sequential(nn.Linear(4, 6), nn.GLU(), nn.Linear(3, 3)), vectors),
    "conv3d": (lambda: nn.Sequential(nn.Conv3d(3, 2, 3), nn.Flatten(), nn.Linear(16, 3)),
               lambda n: (torch.randn(n, 3, 4, 4, 4), torch.randn(n, 3))),
    "squeeze_excite": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), SqueezeExcite(4),
                                             nn.Flatten(), nn.Linear(4 * 36, 3)),
                       lambda n: (torch.randn(n, 3, 6, 6), torch.randn(n, 3))),
}


def squared_error(outputs, targets):  # (N, ...) -> (N,)
    return (outputs - targets).square().flatten(1).sum(1)


def build(case):
    torch.manual_seed(0)
    return CASES[case][0]()


@pytest.mark.parametrize("case", CASES)
def test_third_party_blocks_are_exact(case):
    torch.manual_seed(1)
    inputs, targets = CASES[case][1](5)
    expected, grad_sum = batch_oracle(build(case), squared_error, inputs, targets)
    assert_close(per_sample_grad_sq_norms(build(case), squared_error, inputs, targets), expected)
    model, plain = build(case), build(case)
    meter = DiversityMeter(model, keep_hooks=True)
    for _ in range(3):  # the checked batch, then the direct path on kept hooks
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            squared_error(model(inputs), targets).mean().backward()
        plain.zero_grad()
        squared_error(plain(inputs), targets).mean().backward()
    meter.detach()
    for param, plain_param in zip(model.parameters(), plain.parameters()):
        assert (param.grad is None) == (plain_param.grad is None)
        if param.grad is not None:
            assert_close(param.grad, plain_param.grad)
    assert_close(meter.diversity(), expected.sum() / sum(g.square().sum() for g in grad_sum))


class SequenceFirst(nn.Module):
    """Batch-first data through a layer built sequence-first (batch_first=False)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)

    def forward(self, x):  # (N, T, E) -> (T, N, E) -> (N, T, E)
        return self.layer(x.transpose(0, 1)).transpose(0, 1)


def test_a_sequence_first_transformer_layer_is_refused_by_name():
    inputs, targets = sequences(5)
    with pytest.raises(ValueError, match=r"^layer\.norm1 \(LayerNorm\): its output has shape "
                                         r"\[6, 5, 8\], whose first dimension is not the batch"):
        per_sample_grad_sq_norms(SequenceFirst(), squared_error, inputs, targets)
