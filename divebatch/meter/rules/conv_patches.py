"""The input patches a Conv2d reads, for its rules (``divebatch.meter.rules.conv``): padded as
the layer pads, unfolded channels outermost (``F.unfold``'s order) or with the channels last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def kernel_pads(conv: nn.Conv2d) -> bool:
    """Whether the convolution kernels can apply the padding (zeros, same on both sides)."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def pad_like_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, conv._reversed_padding_repeated_twice, mode=mode)


def kernel_windows(conv: nn.Conv2d, x: Tensor, out_height: int, out_width: int) -> list[Tensor]:
    """(N, C_in, H_out, W_out) views of the padded input, one per kernel offset: what that
    offset of the kernel reads at each output position."""
    x = pad_like_conv(conv, x)  # (N, C_in, Hp, Wp)
    (stride_y, stride_x), (dilation_y, dilation_x) = conv.stride, conv.dilation
    rows, cols = stride_y * (out_height - 1) + 1, stride_x * (out_width - 1) + 1
    return [x[:, :, i:i + rows:stride_y, j:j + cols:stride_x]
            for i in range(0, dilation_y * conv.kernel_size[0], dilation_y)
            for j in range(0, dilation_x * conv.kernel_size[1], dilation_x)]


def unfold_by_windows(conv: nn.Conv2d, x: Tensor, out_height: int, out_width: int) -> Tensor:
    """``unfold_like_conv`` by stacking the kernel offsets' windows: one copy, where
    ``F.unfold`` took 4 to 7 times as long on short patches."""
    windows = kernel_windows(conv, x, out_height, out_width)
    return torch.stack(windows, 2).reshape(x.shape[0], -1, out_height * out_width)


def unfold_like_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """(N, C_in, H, W) -> (N, C_in kh kw, T): the patch each output position reads."""
    if kernel_pads(conv):
        padding = conv.padding
    else:
        x, padding = pad_like_conv(conv, x), 0
    return F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=padding,
                    stride=conv.stride)


def patches_last(conv: nn.Conv2d, x: Tensor, out_height: int, out_width: int) -> Tensor:
    """(N G, T, kh kw C_in / G): each output position's patch, its channels innermost, stacked
    from strided windows of the padded input seen channels-last. Where the input is laid out
    channels-last (the digits CNN's is: its one-channel stem makes it so) each copied run is a
    pixel's channels instead of single elements: the digits CNN's strided convolutions' Gram
    rules took 214 and 113 us against 420 and 303 with ``F.unfold`` (B = 32), and 304 and 195
    against 376 and 289 in the plain layout (docs/performance.md)."""
    n_samples, groups = x.shape[0], conv.groups
    windows = [window.permute(0, 2, 3, 1)  # (N, H_out, W_out, C_in)
               for window in kernel_windows(conv, x, out_height, out_width)]
    patches = torch.stack(windows, 3).view(n_samples, out_height * out_width, -1, groups,
                                           x.shape[1] // groups)  # (N, T, kh kw, G, C_in / G)
    return patches.permute(0, 3, 1, 2, 4).reshape(n_samples * groups, out_height * out_width, -1)
