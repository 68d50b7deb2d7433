"""Normalisation layers: GroupNorm, LayerNorm and BatchNorm, their affine weight and bias in
closed form. BatchNorm in training mode holds the batch statistics fixed, which ignores the
cross-sample terms: an approximation, refused unless allowed (``divebatch.meter.owners``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from divebatch.meter.kernels import accumulation_dtype, is_trainable, sq_norms
from divebatch.meter.rules.registry import register_rule


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


@register_rule(nn.GroupNorm, capture=_group_norm_capture, params=("weight", "bias"))
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


def uses_batch_statistics(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (
        module.training or module.running_mean is None)


@register_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, params=("weight", "bias"))
def _batch_norm_sq_norms(norm: nn.modules.batchnorm._BatchNorm, x: Tensor,
                         grad_out: Tensor) -> Tensor:
    n_samples, channels = x.shape[:2]
    x = x.reshape(n_samples, channels, -1).to(accumulation_dtype(x))  # (N, C, L)
    if uses_batch_statistics(norm):  # approximate: batch statistics held fixed
        var, mean = torch.var_mean(x, dim=(0, 2), correction=0)  # (C,)
    else:
        var, mean = norm.running_var.to(x.dtype), norm.running_mean.to(x.dtype)
    rstd = (var + norm.eps).rsqrt()
    return _affine_sq_norms(norm, x, grad_out.reshape(n_samples, channels, -1), mean, rstd)


@register_rule(nn.LayerNorm, params=("weight", "bias"))
def _layer_norm_sq_norms(norm: nn.LayerNorm, x: Tensor, grad_out: Tensor) -> Tensor:
    n_samples, features = x.shape[0], math.prod(norm.normalized_shape)
    x = x.to(accumulation_dtype(x))
    x_hat = F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
    x_hat = x_hat.reshape(n_samples, -1, features)  # (N, positions, features)
    grad_out = grad_out.reshape(n_samples, -1, features).to(x.dtype)
    norms = []
    if is_trainable(norm.weight):
        norms.append(sq_norms((grad_out * x_hat).sum(1)))  # (N, features)
    if is_trainable(norm.bias):
        norms.append(sq_norms(grad_out.sum(1)))
    return sum(norms)
