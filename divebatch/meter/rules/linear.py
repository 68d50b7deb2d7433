"""The ``nn.Linear`` rule.

A 2-D input gives ||g_i||^2 = ||a_i||^2 ||dy_i||^2 exactly. A sequence input (N, T, d) gives
||sum_t dy_t a_t^T||^2, computed either as sum_{t,s} (a_t.a_s)(dy_t.dy_s) (Gram matrices,
~ T^2 (d_in + d_out) per sample) or by forming each sample's gradient (~ T d_in d_out),
whichever the shapes make cheaper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from divebatch.meter import kernels
from divebatch.meter.kernels import (ELEMENTWISE_COST, SMALL_MATMUL_POSITIONS, accumulation_dtype,
                                     frobenius_dots, in_chunks, is_trainable, sq_norms,
                                     total)
from divebatch.meter.rules.registry import register_rule


# Dtypes the 2-D rule sums in as they come (others are promoted: accumulation_dtype).
NATIVE_DTYPES = (torch.float32, torch.float64)


@register_rule(nn.Linear, params=("weight", "bias"))
def linear_sq_norms(linear: nn.Linear, x: Tensor, grad_out: Tensor) -> Tensor:
    if x.dim() == 2:  # (N, d_in), (N, d_out): rank one, ||dy a^T||^2 = ||dy||^2 ||a||^2
        return _linear_2d_sq_norms(linear, x, grad_out)
    n_samples = x.shape[0]
    x = x.reshape(n_samples, -1, x.shape[-1]).to(accumulation_dtype(x))  # (N, T, d_in)
    grad_out = grad_out.reshape(n_samples, -1, grad_out.shape[-1]).to(x.dtype)  # (N, T, d_out)
    norms = []
    if is_trainable(linear.weight):
        norms.append(linear_weight_sq_norms(x, grad_out))
    if is_trainable(linear.bias):
        norms.append(sq_norms(grad_out.sum(1)))
    return total(norms)


def _linear_2d_sq_norms(linear: nn.Linear, x: Tensor, grad_out: Tensor) -> Tensor:
    """(||a_i||^2 + 1) ||dy_i||^2 with a bias, in as few operations and Python steps as
    possible: small MLPs measure every step, and there each costs more than its arithmetic."""
    if x.dtype is not grad_out.dtype or x.dtype not in NATIVE_DTYPES:
        x = x.to(accumulation_dtype(x))
        grad_out = grad_out.to(x.dtype)
    params = linear._parameters  # nn.Module.__getattr__ costs as much as an operation here
    grad_sq = torch.linalg.vecdot(grad_out, grad_out)  # (N,)
    if not params["weight"].requires_grad:
        return grad_sq
    input_sq = torch.linalg.vecdot(x, x)
    bias = params["bias"]
    if bias is not None and bias.requires_grad:  # one operation; adding the scalar 1 costs more
        return torch.addcmul(grad_sq, input_sq, grad_sq)
    return input_sq.mul_(grad_sq)


def linear_weight_sq_norms(x: Tensor, grad_out: Tensor) -> Tensor:
    """||sum_t dy_t a_t^T||^2 per sample; x: (N, T, d_in), grad_out: (N, T, d_out)."""
    positions, d_in, d_out = x.shape[1], x.shape[2], grad_out.shape[2]
    gram_cost = positions ** 2 * (d_in + d_out + ELEMENTWISE_COST)
    explicit_cost = d_in * d_out * (positions + SMALL_MATMUL_POSITIONS)
    if kernels.gram_is_cheaper(gram_cost, explicit_cost):
        return in_chunks(_sequence_gram_dots, (x, grad_out), 2 * positions ** 2)
    return in_chunks(_sequence_explicit_sq_norms, (x, grad_out), 2 * d_in * d_out)


def _sequence_gram_dots(x: Tensor, grad_out: Tensor) -> Tensor:
    """sum_{t,s} (a_t.a_s)(dy_t.dy_s) per sample."""
    x_gram = torch.bmm(x, x.transpose(1, 2))  # (N, T, T)
    grad_gram = torch.bmm(grad_out, grad_out.transpose(1, 2))  # (N, T, T)
    return frobenius_dots(x_gram, grad_gram)


def _sequence_explicit_sq_norms(x: Tensor, grad_out: Tensor) -> Tensor:
    return sq_norms(torch.bmm(grad_out.transpose(1, 2), x))  # (N, d_out, d_in)
