"""Per-layer rules: the squared norm of every sample's gradient of one layer's own parameters.

A rule turns what a forward hook kept of a layer call (by default its input) and the gradient
of the loss w.r.t. the layer's output, received during the ordinary backward pass, into (N,)
squared norms. Squared norms add up over layers, so per-sample gradients never need to exist all
at once, and for most layers they never exist at all:

- ``nn.Linear``: a 2-D input gives ||g_i||^2 = ||a_i||^2 ||dy_i||^2 exactly. A sequence input
  (N, T, d) gives ||sum_t dy_t a_t^T||^2, computed either as sum_{t,s} (a_t.a_s)(dy_t.dy_s)
  (Gram matrices, ~ T^2 (d_in + d_out) per sample) or by forming each sample's gradient
  (~ T d_in d_out), whichever the shapes make cheaper.
- ``nn.Conv2d``: the same two choices, in ``divebatch.meter.conv``.
- GroupNorm, LayerNorm and eval-mode BatchNorm: affine weight and bias, in closed form.
  BatchNorm in training mode holds the batch statistics fixed, which ignores the cross-sample
  terms: an approximation (see ``divebatch.meter.diversity``).
- Embedding, EmbeddingBag and MultiheadAttention: in ``divebatch.meter.sequence_rules``.
- Any other module with parameters of its own: ``divebatch.meter.functional`` (``vmap`` of
  ``grad`` of the module re-run on one sample at a time) for those parameters only.

Shared tensor helpers and the cost model's constants live in ``divebatch.meter.kernels``. Frozen
parameters (``requires_grad=False``) are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from divebatch.meter import kernels
from divebatch.meter.kernels import (ELEMENTWISE_COST, SMALL_MATMUL_POSITIONS, accumulation_dtype,
                                     frobenius_dots, in_chunks, is_trainable, sq_norms)

class UnsupportedCall(ValueError):
    """Raised by a capture for a call its rule cannot measure exactly; the hooks add the
    module's path to the message."""


def _layer_input(layer: nn.Module, args: tuple, kwargs: dict, output: Tensor) -> Tensor:
    return args[0]


# A capture runs in the forward hook with the call's arguments (bound to the forward's
# signature: positional where they can be) and returns what the rule will need (by default the
# layer input); it raises UnsupportedCall for a call it cannot measure. A rule maps (layer,
# what its capture kept, gradient of the loss w.r.t. the layer output) to the squared norm,
# per sample, of the gradient w.r.t. the layer's trainable direct parameters: (N,).
Capture = Callable[[nn.Module, tuple, dict, Tensor], object]
Rule = Callable[[nn.Module, object, Tensor], Tensor]
RULES: dict[type[nn.Module], tuple[Capture, Rule]] = {}


def register_rule(*layer_types: type[nn.Module],
                  capture: Capture = _layer_input) -> Callable[[Rule], Rule]:
    """Register ``rule`` for exactly these layer classes (subclasses take the torch.func path)."""
    def register(rule: Rule) -> Rule:
        for layer_type in layer_types:
            RULES[layer_type] = (capture, rule)
        return rule
    return register


# ----------------------------------------------------------------------------- Linear

@register_rule(nn.Linear)
def _linear_sq_norms(linear: nn.Linear, x: Tensor, grad_out: Tensor) -> Tensor:
    if x.dim() == 2:  # (N, d_in), (N, d_out): rank one, ||dy a^T||^2 = ||dy||^2 ||a||^2
        return _linear_2d_sq_norms(linear, x, grad_out)
    n_samples = x.shape[0]
    x = x.reshape(n_samples, -1, x.shape[-1]).to(accumulation_dtype(x))  # (N, T, d_in)
    grad_out = grad_out.reshape(n_samples, -1, grad_out.shape[-1]).to(x.dtype)  # (N, T, d_out)
    norms = []
    if is_trainable(linear.weight):
        norms.append(_linear_weight_sq_norms(x, grad_out))
    if is_trainable(linear.bias):
        norms.append(sq_norms(grad_out.sum(1)))
    return sum(norms)


def _linear_2d_sq_norms(linear: nn.Linear, x: Tensor, grad_out: Tensor) -> Tensor:
    """(||a_i||^2 + 1) ||dy_i||^2 with a bias, in as few operations as possible: small MLPs
    measure every step, and there each operation costs more than its arithmetic."""
    if x.dtype != grad_out.dtype or x.dtype not in (torch.float32, torch.float64):
        x = x.to(accumulation_dtype(x))
        grad_out = grad_out.to(x.dtype)
    grad_sq = torch.linalg.vecdot(grad_out, grad_out)  # (N,)
    if not is_trainable(linear.weight):
        return grad_sq
    input_sq = torch.linalg.vecdot(x, x)
    if is_trainable(linear.bias):  # one operation; adding the Python scalar 1 costs more
        return torch.addcmul(grad_sq, input_sq, grad_sq)
    return input_sq.mul_(grad_sq)


def _linear_weight_sq_norms(x: Tensor, grad_out: Tensor) -> Tensor:
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


# ----------------------------------------------------------------------------- normalisation

def _affine_sq_norms(layer: nn.Module, x: Tensor, grad_out: Tensor, mean: Tensor,
                     rstd: Tensor) -> Tensor:
    """Affine weight and bias of y = x_hat * w + b with x_hat = (x - mean) * rstd per channel.

    x, grad_out: (N, C, L); mean, rstd: broadcastable to (N, C). The weight gradient
    sum_l dy * x_hat is rstd * (sum_l dy * x - mean * sum_l dy), which needs no x_hat tensor.
    """
    x = x.to(accumulation_dtype(x))
    grad_out = grad_out.to(x.dtype)
    grad_bias = grad_out.sum(2)  # (N, C)
    norms = []
    if is_trainable(layer.weight):
        grad_dot_x = torch.linalg.vecdot(grad_out, x, dim=2)  # (N, C)
        norms.append(sq_norms(rstd * (grad_dot_x - mean * grad_bias)))
    if is_trainable(layer.bias):
        norms.append(sq_norms(grad_bias))
    return sum(norms)


def _group_norm_capture(norm: nn.GroupNorm, args: tuple, kwargs: dict,
                        output: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The input, and the (N, G) mean and 1/std that autograd saved for backward, if it did."""
    node = output.grad_fn
    return args[0], getattr(node, "_saved_result1", None), getattr(node, "_saved_result2", None)


@register_rule(nn.GroupNorm, capture=_group_norm_capture)
def _group_norm_sq_norms(norm: nn.GroupNorm, saved: tuple[Tensor, Tensor | None, Tensor | None],
                         grad_out: Tensor) -> Tensor:
    x, mean, rstd = saved
    n_samples, channels = x.shape[:2]
    groups = norm.num_groups
    if mean is None or rstd is None or mean.shape != (n_samples, groups):
        var, mean = torch.var_mean(x.reshape(n_samples, groups, -1).to(accumulation_dtype(x)),
                                   dim=2, correction=0)  # (N, G)
        rstd = (var + norm.eps).rsqrt()
    per_channel = channels // groups
    rstd = rstd.to(accumulation_dtype(x)).repeat_interleave(per_channel, dim=1)  # (N, C)
    mean = mean.to(rstd.dtype).repeat_interleave(per_channel, dim=1)
    return _affine_sq_norms(norm, x.reshape(n_samples, channels, -1),
                            grad_out.reshape(n_samples, channels, -1), mean, rstd)


def _uses_batch_statistics(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (
        module.training or module.running_mean is None)


@register_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batch_norm_sq_norms(norm: nn.modules.batchnorm._BatchNorm, x: Tensor,
                         grad_out: Tensor) -> Tensor:
    n_samples, channels = x.shape[:2]
    x = x.reshape(n_samples, channels, -1).to(accumulation_dtype(x))  # (N, C, L)
    if _uses_batch_statistics(norm):  # approximate: batch statistics held fixed
        var, mean = torch.var_mean(x, dim=(0, 2), correction=0)  # (C,)
    else:
        var, mean = norm.running_var.to(x.dtype), norm.running_mean.to(x.dtype)
    rstd = (var + norm.eps).rsqrt()
    return _affine_sq_norms(norm, x, grad_out.reshape(n_samples, channels, -1), mean, rstd)


@register_rule(nn.LayerNorm)
def _layer_norm_sq_norms(norm: nn.LayerNorm, x: Tensor, grad_out: Tensor) -> Tensor:
    n_samples, features = x.shape[0], math.prod(norm.normalized_shape)
    x = x.to(accumulation_dtype(x))
    x_hat = F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
    x_hat = x_hat.reshape(n_samples, -1, features)  # (N, positions, features)
    grad_out = grad_out.reshape(n_samples, -1, features).to(x.dtype)
    norms = []
    if is_trainable(norm.weight):
        norms.append(sq_norms(torch.linalg.vecdot(grad_out.transpose(1, 2),
                                                   x_hat.transpose(1, 2))))  # (N, features)
    if is_trainable(norm.bias):
        norms.append(sq_norms(grad_out.sum(1)))
    return sum(norms)
