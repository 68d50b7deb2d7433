"""Models: linear, MLP, small CNN (GroupNorm by default) and ResNet-18.

>>> build_model("mlp", input_shape=(20,), n_outputs=4, hidden=32)(torch.zeros(2, 20)).shape
torch.Size([2, 4])
"""

from __future__ import annotations

import math

import torch
from torch import nn


def build_model(name: str, *, input_shape: tuple[int, ...], n_outputs: int,
                hidden: int = 128, norm: str = "group") -> nn.Module:
    if name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_outputs))
    if name == "mlp":
        return mlp(math.prod(input_shape), hidden, n_outputs)
    if name == "cnn":
        return SmallCNN(input_shape[0], n_outputs, norm=norm)
    if name == "resnet18":
        from divebatch.models.resnet import resnet18
        return resnet18(n_outputs, input_size=input_shape[-1], norm=norm,
                        in_channels=input_shape[0])
    raise ValueError(f"model should be one of linear, mlp, cnn, resnet18, but got "
                     f"model={name!r}")


def mlp(n_inputs: int, hidden: int, n_outputs: int) -> nn.Sequential:
    """Two hidden layers with ReLU; flattens image input."""
    return nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_outputs))


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm should be one of group, batch, but got norm={kind!r}")


def conv_block(c_in: int, c_out: int, stride: int, norm: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         norm_layer(norm, c_out), nn.ReLU())


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (the last two stride 2) and a linear head.

    8x8 digits -> 4x4 -> 2x2; 32x32 images -> 16x16 -> 8x8, pooled to 2x2.
    """

    def __init__(self, in_channels: int, n_outputs: int, width: int = 32, norm: str = "group"):
        super().__init__()
        self.features = nn.Sequential(conv_block(in_channels, width, 1, norm),
                                      conv_block(width, 2 * width, 2, norm),
                                      conv_block(2 * width, 2 * width, 2, norm),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(2 * width * 4, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, C, H, W)
        return self.head(self.features(x))
