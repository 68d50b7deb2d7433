"""The ``nn.Conv2d`` rule (any stride, padding, dilation, groups, padding mode).

Three exact ways, whichever the layer's shapes and device make cheapest: the explicit one forms
every sample's weight gradient (on a CPU with the convolution weight-gradient kernel, one group
per sample; on CUDA with one batched matrix product over the unfolded input patches, since
cuDNN runs grouped weight gradients with one group per sample slowly); the pixel-Gram one
gets the patch Gram matrix from pixel Gram matrices x^T x of the padded input's stride phases,
summed over the kernel offsets, without unfolding the input into patches (which would copy it
kernel-size times); the unfold-Gram one does unfold it, which pays
on small images, where the number of operations matters more than their size. The cost model
(``divebatch.meter.rules.conv_costs``) counts multiply-adds per sample plus each device's price
of an elementwise pass and of one tensor operation (``DEVICE_COSTS``), and on a channels-last
input the patches' cheaper copy: a GPU launch is worth far more arithmetic than a CPU dispatch,
so on CUDA the few-operation paths win. Everything is summed in float32 at
least (bf16 inputs under autocast are upcast).

Fused: a ``DiversityMeter`` may freeze a layer's weight for one forward call when the explicit
path will serve it (``fuses_weight_grad``); the backward pass then skips that weight's gradient
and ``conv2d_fused_sq_norms`` writes it from the per-sample gradients it forms anyway. The
explicit path then costs only its excess over the ordinary weight gradient.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from divebatch.meter import kernels
from divebatch.meter.kernels import (accumulation_dtype, frobenius_dots, in_chunks,
                                     is_channels_last, is_trainable, sample_chunks, sq_norms,
                                     total)
from divebatch.meter.rules.conv_costs import (DEVICE_COSTS, DeviceCosts, PathCosts, Phases,
                                             path_costs, phases)
from divebatch.meter.rules.conv_patches import (kernel_pads, pad_like_conv, patches_last,
                                                unfold_by_windows, unfold_like_conv)
from divebatch.meter.rules.registry import register_rule


@register_rule(nn.Conv2d, params=("weight", "bias"))
def _conv2d_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    x = x.to(accumulation_dtype(x))  # (N, C_in, H, W)
    grad_out = grad_out.to(x.dtype)  # (N, C_out, H_out, W_out)
    norms = []
    if is_trainable(conv.weight):
        norms.append(_conv2d_weight_sq_norms(conv, x, grad_out))
    if is_trainable(conv.bias):
        norms.append(sq_norms(grad_out.sum((2, 3))))
    return total(norms)


def _device_costs(device: torch.device) -> DeviceCosts:
    return DEVICE_COSTS.get(device.type, DEVICE_COSTS["cpu"])


# On a CPU, a layer whose patches are short (C_in / G kh kw at most this: an RGB or grayscale
# stem, 27 for 3x3 on RGB) gets its per-sample weight gradients from one batched product over
# patches copied once from a strided view of the padded input (conv_patches.patch_view). On the
# small CNN's stem (3 -> 32, 32x32) that took 1.1 ms against 2.9 ms for the grouped
# weight-gradient convolution at B = 32 (6.8 against 11.6 at B = 128); with 8 input channels
# (72) it lost, 3.3 against 2.3.
SHORT_PATCH = 32


# The weight-gradient convolution with one group per sample (the CPU's explicit path) runs
# far slower once a call's data leaves the cache: on the small CNN's 64 -> 64 layer (16x16 in,
# stride 2, B = 128) 5.6 times the batch weight gradient in one call, 1.8 times in chunks of 16
# samples. It takes chunks whose inputs, output gradients and weight gradients hold about this
# many elements (4 MiB of float32), at or near the best chunk on 11 of 13 layer shapes at
# B = 32 and 128 (docs/performance.md, eleventh pass).
GROUPED_CONV_CHUNK_ELEMENTS = 2 ** 20


def _uses_batched_matmul(device: torch.device) -> bool:
    """Whether per-sample weight gradients come from a batched product over unfolded patches
    (CUDA) rather than from the weight-gradient convolution with one group per sample."""
    return device.type == "cuda"


def _short_patches(conv: nn.Conv2d) -> bool:
    return _patch_length(conv) <= SHORT_PATCH


def _patch_length(conv: nn.Conv2d) -> int:
    """C_in / G kh kw: the elements of one group's patch."""
    return conv.weight.shape[1] * conv.kernel_size[0] * conv.kernel_size[1]


def _weight_costs(conv: nn.Conv2d, n_samples: int, channels_in: int, out_height: int,
                  out_width: int, device: torch.device = torch.device("cpu"),
                  channels_last: bool = False) -> PathCosts:
    """The paths' costs for an input of ``n_samples`` x ``channels_in`` channels laid out
    plainly or ``channels_last`` (``is_channels_last``)."""
    return path_costs(_device_costs(device), _uses_batched_matmul(device), channels_last,
                       conv.groups, channels_in, conv.out_channels, conv.kernel_size,
                       conv.stride, conv.dilation, n_samples, out_height, out_width)


def _padded_size(conv: nn.Conv2d, x: Tensor) -> int:
    """Elements per sample of the input padded as the convolution pads it."""
    pad_left, pad_right, pad_top, pad_bottom = conv._reversed_padding_repeated_twice
    return x.shape[1] * (x.shape[2] + pad_top + pad_bottom) * (x.shape[3] + pad_left + pad_right)


def _patches_size(conv: nn.Conv2d, grad_out: Tensor) -> int:
    """Elements per sample of the unfolded input: one patch per output position."""
    return _patch_length(conv) * conv.groups * grad_out.shape[2] * grad_out.shape[3]


def _explicit_temp(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> int:
    if _uses_batched_matmul(x.device) or _short_patches(conv):
        return conv.weight.numel() + _patches_size(conv, grad_out) + _padded_size(conv, x)
    return 2 * conv.weight.numel() + (0 if kernel_pads(conv) else _padded_size(conv, x))


def _explicit_chunks(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> list[tuple[Tensor, ...]]:
    """Slices of samples for the explicit path: within its memory budget, and on a CPU's
    grouped weight-gradient convolution also within ``GROUPED_CONV_CHUNK_ELEMENTS``."""
    chunks = sample_chunks((x, grad_out), _explicit_temp(conv, x, grad_out))
    if _uses_batched_matmul(x.device) or _short_patches(conv):
        return chunks
    per_sample = x[0].numel() + grad_out[0].numel() + conv.weight.numel()
    samples = max(1, GROUPED_CONV_CHUNK_ELEMENTS // per_sample)
    return [parts for chunk in chunks for parts in zip(*(t.split(samples) for t in chunk))]


def _conv2d_weight_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    path = _weight_costs(conv, *x.shape[:2], *grad_out.shape[2:], device=x.device,
                         channels_last=is_channels_last(x)).choice()
    if path == "explicit":
        return torch.cat([_conv2d_explicit_sq_norms(conv, *chunk)
                          for chunk in _explicit_chunks(conv, x, grad_out)])
    positions = grad_out.shape[2] * grad_out.shape[3]
    grams = 2 * conv.groups * positions ** 2
    if path == "unfold_gram":
        return in_chunks(partial(_conv2d_unfold_gram_sq_norms, conv), (x, grad_out),
                          _patches_size(conv, grad_out) + grams + _padded_size(conv, x))
    phase_pixels = [rows * cols for rows, cols, _ in _phase_windows(conv, *grad_out.shape[2:])]
    temp = conv.groups * max(phase_pixels) ** 2 + grams + _padded_size(conv, x)
    return in_chunks(partial(_conv2d_gram_sq_norms, conv), (x, grad_out), temp)


# ----------------------------------------------------------------------------- fused

def fuses_weight_grad(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether a call on ``x`` should take the fused path (``conv2d_fused_sq_norms``).

    The explicit path forms every sample's weight gradient; their sum is the batch weight
    gradient, so autograd need not compute it again. That makes the explicit path cost only
    its excess over the weight gradient, which the choice against the Gram path accounts for.
    The input must share the weight's dtype, and no autocast may run. If neither the input
    nor the bias needs a gradient, the hooks tap the output so that its gradient still
    reaches the layer (``divebatch.meter.tap``): on a CPU, with input and weight laid out
    plainly.
    """
    if not (is_trainable(conv.weight) and x.dtype == conv.weight.dtype and x.dim() == 4
            and not torch.is_autocast_enabled(x.device.type)):
        return False
    tapped = not x.requires_grad and not is_trainable(conv.bias)
    if tapped and not (x.device.type == "cpu" and _plain_layout(x) and _plain_layout(conv.weight)):
        return False  # a tap only where measured: CPU, plain layout (divebatch.meter.tap)
    costs = _weight_costs(conv, *x.shape[:2], *_output_size(conv, x.shape[2], x.shape[3]),
                          device=x.device, channels_last=is_channels_last(x))
    return not kernels.gram_is_cheaper(costs.gram, costs.explicit - costs.weight_grad)


def _plain_layout(tensor: Tensor) -> bool:
    """Contiguous and not also channels-last (as one channel, or a 1x1 kernel, makes it)."""
    return tensor.is_contiguous() and not tensor.is_contiguous(memory_format=torch.channels_last)


def fused_excess_share(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> float:
    """The share of ``conv2d_fused_sq_norms``'s work beyond the batch weight gradient, which
    autograd skipped (by the cost model): what measuring added on that call."""
    costs = _weight_costs(conv, *x.shape[:2], *grad_out.shape[2:], device=x.device,
                          channels_last=is_channels_last(x))
    return max(0.0, 1.0 - costs.weight_grad / costs.explicit)


def _output_size(conv: nn.Conv2d, height: int, width: int) -> tuple[int, int]:
    """(H_out, W_out) from the padding the module applies ('same' and 'valid' included)."""
    pad_left, pad_right, pad_top, pad_bottom = conv._reversed_padding_repeated_twice
    padded = (height + pad_top + pad_bottom, width + pad_left + pad_right)
    return tuple((size - dilation * (kernel - 1) - 1) // stride + 1
                 for size, dilation, kernel, stride in zip(
                     padded, conv.dilation, conv.kernel_size, conv.stride))


def conv2d_fused_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """The Conv2d rule through the explicit path, which also adds the batch weight gradient
    (the sum of the per-sample ones) into ``conv.weight.grad``: for a call whose weight was
    frozen during the forward (see ``fuses_weight_grad``), so that autograd skipped it."""
    x = x.to(accumulation_dtype(x))
    grad_out = grad_out.to(x.dtype)
    weight_norms, weight_grad = [], None
    for x_part, grad_part in _explicit_chunks(conv, x, grad_out):
        per_sample = _conv2d_per_sample_weight_grads(conv, x_part, grad_part)
        weight_norms.append(_large_sq_norms(per_sample))
        part_sum = per_sample.sum(0)
        weight_grad = part_sum if weight_grad is None else weight_grad.add_(part_sum)
    _add_to_grad(conv.weight, weight_grad)
    norms = torch.cat(weight_norms) if len(weight_norms) > 1 else weight_norms[0]
    if is_trainable(conv.bias):
        norms = norms + sq_norms(grad_out.sum((2, 3)))
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
    """(N, ...) -> (N,): faster than ``sq_norms`` on large slices."""
    return torch.linalg.vector_norm(per_sample, dim=tuple(range(1, per_sample.dim()))).square()


def _conv2d_explicit_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    if not _uses_batched_matmul(x.device) and _short_patches(conv):  # any order will do
        return _large_sq_norms(_weight_grads_by_windows(conv, x, grad_out).view(x.shape[0], -1))
    return _large_sq_norms(_conv2d_per_sample_weight_grads(conv, x, grad_out))


def _conv2d_per_sample_weight_grads(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """(N, C_out, C_in / G, kh, kw): every sample's weight gradient, the device's way."""
    if _uses_batched_matmul(x.device):
        return _per_sample_weight_grads_by_bmm(conv, x, grad_out)
    if _short_patches(conv):
        return _per_sample_weight_grads_by_windows(conv, x, grad_out)
    return _per_sample_weight_grads_by_conv(conv, x, grad_out)


def _per_sample_weight_grads_by_conv(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """The weight-gradient kernel with one group per sample."""
    n_samples, channels_in = x.shape[:2]
    if kernel_pads(conv):
        padding = conv.padding
    else:
        x, padding = pad_like_conv(conv, x), 0  # x: (N, C_in, Hp, Wp)
    weight_shape = (n_samples * conv.out_channels, channels_in // conv.groups, *conv.kernel_size)
    weight_grads = torch.nn.grad.conv2d_weight(
        x.reshape(1, n_samples * channels_in, *x.shape[2:]), weight_shape,
        grad_out.reshape(1, -1, *grad_out.shape[2:]), stride=conv.stride, padding=padding,
        dilation=conv.dilation, groups=n_samples * conv.groups)  # (N C_out, C_in / G, kh, kw)
    return weight_grads.unflatten(0, (n_samples, conv.out_channels))


def _per_sample_weight_grads_by_bmm(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """dy p^T for each sample and group, one batched product over the unfolded patches p."""
    n_samples, groups = x.shape[0], conv.groups
    patches = unfold_like_conv(conv, x)  # (N, C_in kh kw, T), channels outermost
    positions = patches.shape[2]
    patches = patches.reshape(n_samples * groups, -1, positions)  # (N G, C_in / G kh kw, T)
    grads = grad_out.reshape(n_samples * groups, -1, positions)  # (N G, C_out / G, T)
    weight_grads = torch.bmm(grads, patches.transpose(1, 2))  # (N G, C_out / G, C_in / G kh kw)
    return weight_grads.view(n_samples, conv.out_channels, -1, *conv.kernel_size)


def _per_sample_weight_grads_by_windows(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """p dy^T for each sample and group (``_weight_grads_by_windows``), in the weight's order."""
    n_samples, groups = x.shape[0], conv.groups
    weight_grads = _weight_grads_by_windows(conv, x, grad_out).view(
        n_samples, groups, -1, conv.out_channels // groups)
    return weight_grads.transpose(2, 3).reshape(n_samples, conv.out_channels, -1,
                                                *conv.kernel_size)


def _weight_grads_by_windows(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """(N G, C_in / G kh kw, C_out / G): p dy^T for each sample and group, the patches p one
    copy of strided views; the product in this order ran in two thirds of the time of dy p^T
    on a CPU."""
    n_samples, groups = x.shape[0], conv.groups
    patches = unfold_by_windows(conv, x, *grad_out.shape[2:])  # (N, C_in kh kw, T)
    positions = patches.shape[2]
    patches = patches.reshape(n_samples * groups, -1, positions)  # (N G, C_in / G kh kw, T)
    grads = grad_out.reshape(n_samples * groups, -1, positions)  # (N G, C_out / G, T)
    return torch.bmm(patches, grads.transpose(1, 2))


def _conv2d_unfold_gram_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """sum_{t,s} (p_t.p_s)(dy_t.dy_s) from the unfolded patches p_t: kernel-size copies of the
    input, but only a handful of operations, which is what counts on small images."""
    n_samples, groups = x.shape[0], conv.groups
    patches = patches_last(conv, x, *grad_out.shape[2:])  # (N G, T, kh kw C_in / G)
    patch_gram = torch.bmm(patches, patches.transpose(1, 2))  # (N G, T, T)
    grads = grad_out.reshape(n_samples * groups, -1, patches.shape[1])  # (N G, C_out / G, T)
    grad_gram = torch.bmm(grads.transpose(1, 2), grads)
    return frobenius_dots(patch_gram, grad_gram).view(n_samples, groups).sum(1)


def _phase_windows(conv: nn.Conv2d, out_height: int, out_width: int) -> Phases:
    return phases(conv.kernel_size, conv.stride, conv.dilation, out_height, out_width)


def _conv2d_gram_sq_norms(conv: nn.Conv2d, x: Tensor, grad_out: Tensor) -> Tensor:
    """sum_{t,s} (p_t.p_s)(dy_t.dy_s), the patch dot products p_t.p_s from pixel Gram matrices.

    Within one stride phase every kernel offset is a shift, so p_t.p_s sums shifted windows of
    that phase's pixel Gram matrix x^T x over the offsets.
    """
    n_samples, groups = x.shape[0], conv.groups
    x = pad_like_conv(conv, x)  # (N, C_in, Hp, Wp)
    out_height, out_width = grad_out.shape[2:]
    grads = grad_out.reshape(n_samples * groups, -1, out_height * out_width)  # (N G, C_out / G, T)
    grad_gram = torch.bmm(grads.transpose(1, 2), grads)  # (N G, T, T)
    patch_gram = None  # (N G, H_out, W_out, H_out, W_out)
    stride_y, stride_x = conv.stride
    for rows, cols, offsets in _phase_windows(conv, out_height, out_width):
        phase_y, phase_x = offsets[0][:2]
        phase = x[:, :, phase_y::stride_y, phase_x::stride_x][:, :, :rows, :cols]
        pixels = phase.reshape(n_samples * groups, -1, rows * cols)  # (N G, C_in / G, P)
        pixel_gram = torch.bmm(pixels.transpose(1, 2), pixels).view(-1, rows, cols, rows, cols)
        for _, _, shift_y, shift_x in offsets:
            window_y = slice(shift_y, shift_y + out_height)
            window_x = slice(shift_x, shift_x + out_width)
            window = pixel_gram[:, window_y, window_x, window_y, window_x]
            patch_gram = window.clone() if patch_gram is None else patch_gram.add_(window)
    return frobenius_dots(patch_gram, grad_gram).view(n_samples, groups).sum(1)

