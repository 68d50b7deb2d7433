"""An output gradient for a layer call that autograd would not record: a fused Conv2d (its
weight frozen for the call, ``divebatch.meter.rules.conv``) on an input that needs no gradient
and without a trainable bias, as the first convolution of most image models. ``tap`` makes
autograd record the output, in place (the same tensor, so later in-place layers such as
``ReLU(inplace=True)`` still work), and its gradient then reaches the meter's hooks like any
layer's; nothing flows further back.

Only outputs in the plain (not channels-last) layout are tapped (``fuses_weight_grad``): with
torch 2.13 on a CPU, GroupNorm's backward in channels-last layout crashes the process
(segmentation fault) when its input's gradient is not wanted, and after a tapped stem the
meter's weighted check (``divebatch.meter.sample_weights``) asks for exactly that. A digits
batch (N, 64) viewed as (N, 1, 8, 8) has channel stride 1, so its stem's output comes out
channels-last: that stem is not fused. Nor is a stem on CUDA, where this has not been measured
(no GPU was at hand) and a mistake would go unseen: the meter's checks cannot compare a fused
weight's gradient with autograd's, since autograd did not compute it."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _Tap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output: Tensor, anchor: Tensor) -> Tensor:
        ctx.mark_dirty(output)
        return output

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[None, None]:
        return None, None


def tap(output: Tensor) -> Tensor:
    """``output`` (the same tensor), recorded by autograd: its gradient will be computed."""
    anchor = torch.empty(0, device=output.device, requires_grad=True)
    return _Tap.apply(output, anchor)


def unfreeze(layer: nn.Module, output: object) -> None:
    """After the call of a layer whose weight was frozen for it (fused): the weight trains
    again, and an output that autograd did not record is tapped."""
    layer.weight.requires_grad_(True)
    if type(output) is Tensor and not output.requires_grad and torch.is_grad_enabled():
        tap(output)
