"""Normalisation layers: GroupNorm, LayerNorm, InstanceNorm and BatchNorm, their affine weight
and bias in closed form. BatchNorm in training mode holds the batch statistics fixed, which
ignores the cross-sample terms: an approximation, refused unless allowed
(``divebatch.meter.owners``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from divebatch.meter.kernels import (accumulation_dtype, is_channels_last, is_trainable,
                                     sq_norms, total)
from divebatch.meter.rules.registry import register_rule


def _channel_sums(x: Tensor, grad_out: Tensor) -> tuple[Tensor, Tensor]:
    """(N, C, ...) -> (N, C) twice: sum of dy and sum of dy * x over each sample's channel, in
    float32 at least. A channels-last pair is read as (N, L, C), its own order: 30-40% faster
    than the strided per-channel dot products on the digits CNN's GroupNorms."""
    dtype = accumulation_dtype(x)
    n_samples, channels = x.shape[:2]
    if x.dim() == 4 and is_channels_last(x) and is_channels_last(grad_out):
        x = x.permute(0, 2, 3, 1).reshape(n_samples, -1, channels).to(dtype)  # (N, L, C)
        grad_out = grad_out.permute(0, 2, 3, 1).reshape(n_samples, -1, channels).to(dtype)
        return grad_out.sum(1), (grad_out * x).sum(1)
    x = x.reshape(n_samples, channels, -1).to(dtype)  # (N, C, L)
    grad_out = grad_out.reshape(n_samples, channels, -1).to(dtype)
    return grad_out.sum(2), _channel_dots(grad_out, x)


# The per-channel dot products sum dy * x a few samples at a time, their products within this
# many elements (1 MiB of float32) in one buffer: on the small CNN's first GroupNorm (32
# channels at 32x32, B = 128) 2.2 ms against 3.3 ms (and 546 page faults) for one product of the
# whole batch (docs/performance.md, eleventh pass).
PRODUCT_CHUNK_ELEMENTS = 2 ** 18


def _channel_dots(grad_out: Tensor, x: Tensor) -> Tensor:
    """(N, C, L) twice -> (N, C): sum_l dy * x, in chunks of samples (``PRODUCT_CHUNK_ELEMENTS``)
    unless the batch fits one, or autograd records the rule (``out=`` takes no gradient)."""
    samples = max(1, PRODUCT_CHUNK_ELEMENTS // max(grad_out[0].numel(), 1))
    records = torch.is_grad_enabled() and (x.requires_grad or grad_out.requires_grad)
    if samples >= len(x) or records:
        return torch.linalg.vecdot(grad_out, x, dim=2)
    dots = grad_out.new_empty(grad_out.shape[:2])
    product = torch.empty_like(grad_out[:samples], memory_format=torch.contiguous_format)
    for start in range(0, len(x), samples):
        part = slice(start, start + samples)
        chunk = product[:len(x[part])]
        torch.sum(torch.mul(grad_out[part], x[part], out=chunk), 2, out=dots[part])
    return dots


def _affine_sq_norms(layer: nn.Module, grad_bias: Tensor, grad_dot_x: Tensor, mean: Tensor,
                     rstd: Tensor) -> Tensor:
    """Affine weight and bias of y = x_hat * w + b with x_hat = (x - mean) * rstd per channel,
    from ``_channel_sums``: the weight gradient sum_l dy * x_hat is
    rstd * (sum_l dy * x - mean * sum_l dy), which needs no x_hat tensor. mean and rstd
    broadcast against the sums (GroupNorm views them as (N, G, C / G))."""
    norms = []
    if is_trainable(layer.weight):
        norms.append(sq_norms((grad_dot_x - mean * grad_bias).mul_(rstd)))
    if is_trainable(layer.bias):
        norms.append(sq_norms(grad_bias))
    return total(norms)


def _saved_statistics(output: Tensor, node_name: str) -> tuple[Tensor | None, Tensor | None]:
    """The mean and 1/std that autograd saved for the backward of the normalisation that made
    ``output`` (node ``node_name``), or None twice where another op made it."""
    node = output.grad_fn
    if type(node).__name__ != node_name or _saved_tensors_hooked():
        return None, None
    return node._saved_result1, node._saved_result2


def _saved_tensors_hooked() -> bool:
    """Whether saved tensors go through hooks now (activation checkpointing, offloading):
    reading one back would run its unpack hook, which checkpointing answers by recomputing
    the whole block inside the forward."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top is None or top(False) is not None


def _group_norm_capture(norm: nn.GroupNorm, args: tuple, kwargs: dict,
                        output: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The input, and the (N, G) mean and 1/std that autograd saved for backward, if it did."""
    return args[0], *_saved_statistics(output, "NativeGroupNormBackward0")


@register_rule(nn.GroupNorm, capture=_group_norm_capture, params=("weight", "bias"))
def _group_norm_sq_norms(norm: nn.GroupNorm, saved: tuple[Tensor, Tensor | None, Tensor | None],
                         grad_out: Tensor) -> Tensor:
    x, mean, rstd = saved
    n_samples, channels = x.shape[:2]
    groups = norm.num_groups
    dtype = accumulation_dtype(x)
    if mean is None or rstd is None or mean.shape != (n_samples, groups):
        var, mean = torch.var_mean(x.reshape(n_samples, groups, -1).to(dtype),
                                   dim=2, correction=0)  # (N, G)
        rstd = (var + norm.eps).rsqrt()
    grad_bias, grad_dot_x = (sums.view(n_samples, groups, channels // groups)
                             for sums in _channel_sums(x, grad_out))  # (N, G, C / G)
    return _affine_sq_norms(norm, grad_bias, grad_dot_x, mean.to(dtype).unsqueeze(2),
                            rstd.to(dtype).unsqueeze(2))


def uses_batch_statistics(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (
        module.training or module.running_mean is None)


@register_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, params=("weight", "bias"))
def _batch_norm_sq_norms(norm: nn.modules.batchnorm._BatchNorm, x: Tensor,
                         grad_out: Tensor) -> Tensor:
    dtype = accumulation_dtype(x)
    if uses_batch_statistics(norm):  # approximate: batch statistics held fixed
        var, mean = torch.var_mean(x.reshape(*x.shape[:2], -1).to(dtype), dim=(0, 2),
                                   correction=0)  # (C,)
    else:
        var, mean = norm.running_var.to(dtype), norm.running_mean.to(dtype)
    rstd = (var + norm.eps).rsqrt()
    return _affine_sq_norms(norm, *_channel_sums(x, grad_out), mean, rstd)


@register_rule(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
               params=("weight", "bias"))
def _instance_norm_sq_norms(norm: nn.modules.instancenorm._InstanceNorm, x: Tensor,
                            grad_out: Tensor) -> Tensor:
    """Each sample's own statistics (training, or no running statistics), else the running
    ones; the in-place update of running statistics in training (which a re-run by torch.func
    refused) does not touch the output."""
    dtype = accumulation_dtype(x)
    if norm.training or not norm.track_running_stats:
        var, mean = torch.var_mean(x.reshape(*x.shape[:2], -1).to(dtype), dim=2,
                                   correction=0)  # (N, C)
    else:
        var, mean = norm.running_var.to(dtype), norm.running_mean.to(dtype)
    rstd = (var + norm.eps).rsqrt()
    return _affine_sq_norms(norm, *_channel_sums(x, grad_out), mean, rstd)


def _layer_norm_capture(norm: nn.LayerNorm, args: tuple, kwargs: dict,
                        output: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The input, and the mean and 1/std that autograd saved for backward (one per position,
    shaped to broadcast against the input), if it did."""
    return args[0], *_saved_statistics(output, "NativeLayerNormBackward0")


def _normalised(norm: nn.LayerNorm, x: Tensor, mean: Tensor | None,
                rstd: Tensor | None) -> Tensor:
    """x_hat, from autograd's saved statistics where they fit x: (x - mean) * rstd is two
    elementwise passes, a fresh ``F.layer_norm`` about six times their time (GPT, B = 128)."""
    if mean is None or rstd is None or mean.shape != rstd.shape or mean.dim() != x.dim():
        return F.layer_norm(x, norm.normalized_shape, eps=norm.eps)
    return (x - mean.to(x.dtype)).mul_(rstd.to(x.dtype))


@register_rule(nn.LayerNorm, capture=_layer_norm_capture, params=("weight", "bias"))
def _layer_norm_sq_norms(norm: nn.LayerNorm, saved: tuple[Tensor, Tensor | None, Tensor | None],
                         grad_out: Tensor) -> Tensor:
    x, mean, rstd = saved
    n_samples, features = x.shape[0], math.prod(norm.normalized_shape)
    x = x.to(accumulation_dtype(x))
    x_hat = _normalised(norm, x, mean, rstd).reshape(n_samples, -1, features)  # (N, L, F)
    grad_out = grad_out.reshape(n_samples, -1, features).to(x.dtype)
    norms = []
    if is_trainable(norm.weight):
        norms.append(sq_norms(x_hat.mul_(grad_out).sum(1)))  # (N, features)
    if is_trainable(norm.bias):
        norms.append(sq_norms(grad_out.sum(1)))
    return total(norms)
