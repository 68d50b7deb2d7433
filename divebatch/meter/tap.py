"""An output gradient for a layer call that autograd would not record: a fused Conv2d (its
weight frozen for the call, ``divebatch.meter.rules.conv``) on an input that needs no gradient
and without a trainable bias, as the first convolution of most image models. ``tap`` makes
autograd record the output, in place (the same tensor, so later in-place layers such as
``ReLU(inplace=True)`` still work), and its gradient then reaches the meter's hooks like any
layer's; nothing flows further back."""

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
