"""The input patches a Conv2d reads, for its rules (``divebatch.meter.rules.conv``): padded as
the layer pads, unfolded channels outermost (``F.unfold``'s order) or with the channels last.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def kernel_pads(conv: nn.Conv2d) -> bool:
    """Whether the convolution kernels can apply the padding (zeros, same on both sides)."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def pad_like_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, conv._reversed_padding_repeated_twice, mode=mode)


def patch_view(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """(N, C_in, H_out, W_out, kh, kw): every output position's patch as a strided view of the
    padded input (``Tensor.unfold`` twice), no copy until the caller lays the patches out."""
    x = pad_like_conv(conv, x)  # (N, C_in, Hp, Wp)
    (kernel_y, kernel_x), (dilation_y, dilation_x) = conv.kernel_size, conv.dilation
    patches = x.unfold(2, dilation_y * (kernel_y - 1) + 1, conv.stride[0]).unfold(
        3, dilation_x * (kernel_x - 1) + 1, conv.stride[1])  # (N, C_in, H_out, W_out, span, span)
    if dilation_y > 1 or dilation_x > 1:
        patches = patches[..., ::dilation_y, ::dilation_x]
    return patches


def unfold_by_windows(conv: nn.Conv2d, x: Tensor, out_height: int, out_width: int) -> Tensor:
    """``unfold_like_conv`` by one copy of ``patch_view``: for short patches (the explicit
    path's stems) on a CPU. The digits stem's (1 -> 32, 8x8, B = 32) in 60 us as the trainer lays
    its input out, where stacking the kernel offsets' windows took 113; in the plain layout
    62 us, where ``F.unfold`` takes 44 (docs/performance.md, seventh pass)."""
    patches = patch_view(conv, x)
    return patches.permute(0, 1, 4, 5, 2, 3).reshape(x.shape[0], -1, out_height * out_width)


def unfold_like_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """(N, C_in, H, W) -> (N, C_in kh kw, T): the patch each output position reads."""
    if kernel_pads(conv):
        padding = conv.padding
    else:
        x, padding = pad_like_conv(conv, x), 0
    return F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=padding,
                    stride=conv.stride)


def patches_last(conv: nn.Conv2d, x: Tensor, out_height: int, out_width: int) -> Tensor:
    """(N G, T, kh kw C_in / G): each output position's patch, its channels innermost, one copy
    of ``patch_view``. Where the input is laid out channels-last (the digits CNN's is: its
    one-channel stem makes it so) each copied run is a pixel's channels instead of single
    elements: on the digits CNN's strided convolutions (B = 32) 48 and 29 us against 103 and
    77 us by stacking the kernel offsets' windows and 307 and 191 us with ``F.unfold``; in the
    plain layout 165 and 116 us against 265 and 163 with ``F.unfold`` (docs/performance.md)."""
    n_samples, groups = x.shape[0], conv.groups
    patches = patch_view(conv, x)  # (N, C_in, H_out, W_out, kh, kw)
    patches = patches.unflatten(1, (groups, -1))  # (N, G, C_in / G, H_out, W_out, kh, kw)
    return patches.permute(0, 1, 3, 4, 5, 6, 2).reshape(n_samples * groups,
                                                          out_height * out_width, -1)
