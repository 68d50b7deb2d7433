"""The ``nn.Conv2d`` rule (any stride, padding, dilation, groups, padding mode).

Two exact ways, whichever the layer's shapes make cheaper: the explicit one runs the
convolution weight-gradient kernel with one group per sample, forming every sample's weight
gradient; the Gram one gets the patch Gram matrix from pixel Gram matrices x^T x of the padded
input's stride phases, summed over the kernel offsets. Neither path unfolds the input into
patches (which would copy it kernel-size times).

Fused: a ``DiversityMeter`` may freeze a layer's weight for one forward call when the explicit
path will serve it (``fuses_weight_grad``); the backward pass then skips that weight's gradient
and ``conv2d_fused_sq_norms`` writes it from the per-sample gradients it forms anyway. The
explicit path then costs only its excess over the ordinary weight gradient.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import sq_norm_rules as rules
from .sq_norm_rules import (ELEMENTWISE_COST, SMALL_MATMUL_POSITIONS, _accumulation_dtype,
                            _frobenius_dots, _in_chunks, _is_trainable, _sq_norms,
                            register_rule, sample_chunks)


@register_rule(nn.Conv2d)
def _conv2d_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    x = x.to(_accumulation_dtype(x))  # (N, C_in, H, W)
    grad_out = grad_out.to(x.dtype)  # (N, C_out, H_out, W_out)
    norms = []
    if _is_trainable(conv.weight):
        norms.append(_conv2d_weight_sq_norms(conv, x, grad_out))
    if _is_trainable(conv.bias):
        norms.append(_sq_norms(grad_out.sum((2, 3))))
    return sum(norms)


def _weight_costs(conv: nn.Conv2d, channels_in: int, out_height: int,
                  out_width: int) -> tuple[float, float, float]:
    """Per-sample multiply-adds of (Gram path, explicit path, the batch weight gradient)."""
    groups = conv.groups
    c_in, c_out = channels_in // groups, conv.out_channels // groups  # per group
    kernel = conv.kernel_size[0] * conv.kernel_size[1]
    positions = out_height * out_width
    phase_pixels = [rows * cols for rows, cols, _ in _phase_windows(conv, out_height, out_width)]
    gram = (sum(p ** 2 for p in phase_pixels) * c_in
            + positions ** 2 * (c_out + kernel * ELEMENTWISE_COST))
    explicit = c_in * kernel * c_out * (positions + SMALL_MATMUL_POSITIONS)
    return gram, explicit, c_in * kernel * c_out * positions


def _padded_size(conv: nn.Conv2d, x: Tensor) -> int:
    """Elements per sample of the input padded as the convolution pads it."""
    pad_left, pad_right, pad_top, pad_bottom = conv._reversed_padding_repeated_twice
    return x.shape[1] * (x.shape[2] + pad_top + pad_bottom) * (x.shape[3] + pad_left + pad_right)


def _explicit_temp(conv: nn.Conv2d, x: Tensor) -> int:
    return 2 * conv.weight.numel() + (0 if _kernel_pads(conv) else _padded_size(conv, x))


def _conv2d_weight_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    gram_cost, explicit_cost, _ = _weight_costs(conv, x.shape[1], *grad_out.shape[2:])
    if rules._gram_is_cheaper(gram_cost, explicit_cost):
        positions = grad_out.shape[2] * grad_out.shape[3]
        phase_pixels = [rows * cols for rows, cols, _ in _phase_windows(conv, *grad_out.shape[2:])]
        temp = (conv.groups * (max(phase_pixels) ** 2 + 2 * positions ** 2)
                + _padded_size(conv, x))
        return _in_chunks(partial(_conv2d_gram_sq_norms, conv), (x, grad_out), temp)
    return _in_chunks(partial(_conv2d_explicit_sq_norms, conv), (x, grad_out),
                      _explicit_temp(conv, x))


# ----------------------------------------------------------------------------- fused

def fuses_weight_grad(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether a call on ``x`` should take the fused path (``conv2d_fused_sq_norms``).

    The explicit path forms every sample's weight gradient; their sum is the batch weight
    gradient, so autograd need not compute it again. That makes the explicit path cost only
    its excess over the weight gradient, which the choice against the Gram path accounts for.
    The input must require grad (the output gradient must still reach the layer with the
    weight frozen for the call) and share the weight's dtype (no autocast).
    """
    if not (_is_trainable(conv.weight) and x.requires_grad and x.dtype == conv.weight.dtype
            and x.dim() == 4):
        return False
    gram_cost, explicit_cost, weight_grad_cost = _weight_costs(
        conv, x.shape[1], *_output_size(conv, x.shape[2], x.shape[3]))
    return not rules._gram_is_cheaper(gram_cost, explicit_cost - weight_grad_cost)


def _output_size(conv: nn.Conv2d, height: int, width: int) -> tuple[int, int]:
    if conv.padding == "same":
        return height, width
    padding = (0, 0) if conv.padding == "valid" else conv.padding
    return tuple((size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
                 for size, pad, dilation, kernel, stride in zip(
                     (height, width), padding, conv.dilation, conv.kernel_size, conv.stride))


def conv2d_fused_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """The Conv2d rule through the explicit path, which also adds the batch weight gradient
    (the sum of the per-sample ones) into ``conv.weight.grad``: for a call whose weight was
    frozen during the forward (see ``fuses_weight_grad``), so that autograd skipped it."""
    x = x.to(_accumulation_dtype(x))
    grad_out = grad_out.to(x.dtype)
    weight_norms, weight_grad = [], None
    for x_part, grad_part in sample_chunks((x, grad_out), _explicit_temp(conv, x)):
        per_sample = _conv2d_per_sample_weight_grads(conv, x_part, grad_part)
        weight_norms.append(_large_sq_norms(per_sample))
        part_sum = per_sample.sum(0)
        weight_grad = part_sum if weight_grad is None else weight_grad.add_(part_sum)
    _add_to_grad(conv.weight, weight_grad)
    norms = torch.cat(weight_norms) if len(weight_norms) > 1 else weight_norms[0]
    if _is_trainable(conv.bias):
        norms = norms + _sq_norms(grad_out.sum((2, 3)))
    return norms


def _add_to_grad(param: Tensor, grad: Tensor) -> None:
    """param.grad += grad, creating it with the parameter's layout as autograd would."""
    grad = grad.to(param.dtype)
    if param.grad is not None:
        param.grad.add_(grad)
    elif grad.stride() == param.stride():
        param.grad = grad
    else:
        param.grad = torch.empty_like(param).copy_(grad)


def _large_sq_norms(per_sample: Tensor) -> Tensor:
    """(N, ...) -> (N,): faster than ``_sq_norms`` on large slices."""
    return torch.linalg.vector_norm(per_sample.reshape(len(per_sample), -1), dim=1).square()


def _kernel_pads(conv: nn.Conv2d) -> bool:
    """Whether the convolution kernels can apply the padding (zeros, same on both sides)."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def _pad_like_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, conv._reversed_padding_repeated_twice, mode=mode)


def _conv2d_explicit_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    return _large_sq_norms(_conv2d_per_sample_weight_grads(conv, x, grad_out))


def _conv2d_per_sample_weight_grads(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """(N, C_out, C_in / G, kh, kw): the weight-gradient kernel with one group per sample."""
    n_samples, channels_in = x.shape[:2]
    if _kernel_pads(conv):
        padding = conv.padding
    else:
        x, padding = _pad_like_conv(conv, x), 0  # x: (N, C_in, Hp, Wp)
    weight_shape = (n_samples * conv.out_channels, channels_in // conv.groups, *conv.kernel_size)
    weight_grads = torch.nn.grad.conv2d_weight(
        x.reshape(1, n_samples * channels_in, *x.shape[2:]), weight_shape,
        grad_out.reshape(1, -1, *grad_out.shape[2:]), stride=conv.stride, padding=padding,
        dilation=conv.dilation, groups=n_samples * conv.groups)  # (N C_out, C_in / G, kh, kw)
    return weight_grads.unflatten(0, (n_samples, conv.out_channels))


def _phase_windows(conv: nn.Conv2d, out_height: int,
                   out_width: int) -> list[tuple[int, int, list[tuple[int, int, int, int]]]]:
    """The stride phases of the padded input that the kernel reads, with their kernel offsets.

    Kernel offset (i, j) at output position (y, x) reads padded pixel (s y + d i, s x + d j),
    which is pixel (y + (d i) // s, x + (d j) // s) of phase ((d i) % s, (d j) % s), the
    sub-image x[:, :, (d i) % s::s, (d j) % s::s]. For each phase that some offset reads:
    (rows, cols) of it that are read, and [(phase_y, phase_x, shift_y, shift_x)] per offset.
    """
    def by_phase(kernel: int, dilation: int, stride: int) -> dict[int, list[int]]:
        shifts: dict[int, list[int]] = {}
        for offset in range(0, kernel * dilation, dilation):
            shifts.setdefault(offset % stride, []).append(offset // stride)
        return shifts

    rows_by_phase = by_phase(conv.kernel_size[0], conv.dilation[0], conv.stride[0])
    cols_by_phase = by_phase(conv.kernel_size[1], conv.dilation[1], conv.stride[1])
    return [(out_height + max(shifts_y), out_width + max(shifts_x),
             [(phase_y, phase_x, shift_y, shift_x) for shift_y in shifts_y for shift_x in shifts_x])
            for phase_y, shifts_y in rows_by_phase.items()
            for phase_x, shifts_x in cols_by_phase.items()]


def _conv2d_gram_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """sum_{t,s} (p_t.p_s)(dy_t.dy_s), the patch dot products p_t.p_s from pixel Gram matrices.

    Within one stride phase every kernel offset is a shift, so p_t.p_s sums shifted windows of
    that phase's pixel Gram matrix x^T x over the offsets.
    """
    n_samples, groups = x.shape[0], conv.groups
    x = _pad_like_conv(conv, x)  # (N, C_in, Hp, Wp)
    out_height, out_width = grad_out.shape[2:]
    grads = grad_out.reshape(n_samples * groups, -1, out_height * out_width)  # (N G, C_out / G, T)
    grad_gram = torch.bmm(grads.transpose(1, 2), grads)  # (N G, T, T)
    patch_gram = torch.zeros_like(grad_gram).view(-1, out_height, out_width, out_height, out_width)
    stride_y, stride_x = conv.stride
    for rows, cols, offsets in _phase_windows(conv, out_height, out_width):
        phase_y, phase_x = offsets[0][:2]
        phase = x[:, :, phase_y::stride_y, phase_x::stride_x][:, :, :rows, :cols]
        pixels = phase.reshape(n_samples * groups, -1, rows * cols)  # (N G, C_in / G, P)
        pixel_gram = torch.bmm(pixels.transpose(1, 2), pixels).view(-1, rows, cols, rows, cols)
        for _, _, shift_y, shift_x in offsets:
            window_y = slice(shift_y, shift_y + out_height)
            window_x = slice(shift_x, shift_x + out_width)
            patch_gram += pixel_gram[:, window_y, window_x, window_y, window_x]
    return _frobenius_dots(patch_gram, grad_gram).view(n_samples, groups).sum(1)
