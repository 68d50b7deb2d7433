"""A small GPT in the style of nanoGPT: the transformer the per-sample norms are proven on.

Token and learned position embeddings, pre-LayerNorm blocks of causal self-attention and a GELU
MLP, and an output layer tied to the token embedding (``lm_head.weight`` is ``wte.weight``).

>>> model = GPT(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
>>> model(torch.zeros(3, 5, dtype=torch.long)).shape
torch.Size([3, 5, 11])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # query, key and value for all heads
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: Tensor) -> Tensor:  # (N, T, C) -> (N, T, C)
        n_samples, length, channels = x.shape
        heads = [t.view(n_samples, length, self.n_head, -1).transpose(1, 2)
                 for t in self.c_attn(x).split(channels, dim=2)]  # 3 x (N, heads, T, C / heads)
        y = F.scaled_dot_product_attention(*heads, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(n_samples, length, channels))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(),
                                 nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Next-token logits (N, T, vocab_size) for token indices (N, T), T <= block_size."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int = 2, n_head: int = 2,
                 n_embd: int = 32) -> None:
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer)),
            ln_f=nn.LayerNorm(n_embd)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied input and output embeddings

    def forward(self, idx: Tensor) -> Tensor:
        length = idx.shape[1]
        if length > self.block_size:
            raise ValueError(f"sequence length should be <= block_size={self.block_size}, but "
                             f"got {length}")
        positions = torch.arange(length, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(positions)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def token_losses(logits: Tensor, targets: Tensor) -> Tensor:
    """(N, T, V), (N, T) -> (N,): each sequence's mean next-token cross-entropy."""
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(1)
