"""ResNet-18 for small images (He et al. 2016), with GroupNorm by default.

CIFAR form: a 3x3 stride-1 stem conv and no max-pool, then four stages of two BasicBlocks
(widths 64-128-256-512, stride 2 at the start of stages 2-4), global average pool, linear.
Tiny-ImageNet (64x64) uses the same CIFAR stem, a common choice in the literature: it keeps
every pixel (final feature map 8x8 instead of 4x4, about 4x the CIFAR compute per image), and
the adaptive average pool makes the head independent of the input size. Inputs larger than
64 pixels get the ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool).

GroupNorm is the default because it keeps samples independent within a batch, so per-sample
gradients, and hence gradient diversity, are exact; BatchNorm ("batch") mixes samples.

>>> model = resnet18(10, width=8)
>>> model(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("group", "batch")
CIFAR_STEM_MAX_SIZE = 64  # inputs up to this size use the 3x3 stride-1 stem


def norm_layer(norm: str, channels: int, groups: int = 32) -> nn.Module:
    """GroupNorm with gcd(groups, channels) groups (always divides), or BatchNorm2d."""
    _check_norm(norm)
    if norm == "group":
        return nn.GroupNorm(math.gcd(groups, channels), channels)
    return nn.BatchNorm2d(channels)


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm should be one of {', '.join(NORMS)}, but got norm={norm!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; a 1x1 conv shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str,
                 groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm1 = norm_layer(norm, out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.norm2 = norm_layer(norm, out_channels, groups)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                norm_layer(norm, out_channels, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H/s, W/s)
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, four stages of BasicBlocks, global average pool, linear classifier."""

    def __init__(self, blocks_per_stage: tuple[int, ...], num_classes: int, *,
                 input_size: int, norm: str, groups: int, in_channels: int, width: int):
        super().__init__()
        self.norm = norm
        self.stem = self._stem(in_channels, width, input_size, norm, groups)
        stages, channels = [], width
        for index, n_blocks in enumerate(blocks_per_stage):
            out_channels = width * 2 ** index
            for block in range(n_blocks):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(BasicBlock(channels, out_channels, stride, norm, groups))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    @staticmethod
    def _stem(in_channels: int, width: int, input_size: int, norm: str,
              groups: int) -> nn.Sequential:
        if input_size <= CIFAR_STEM_MAX_SIZE:
            return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False),
                                 norm_layer(norm, width, groups), nn.ReLU())
        return nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, padding=3, bias=False),
                             norm_layer(norm, width, groups), nn.ReLU(),
                             nn.MaxPool2d(3, 2, padding=1))

    def _init_weights(self) -> None:
        """Kaiming-normal convs (fan_out, ReLU); norm layers start as the identity."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.GroupNorm, nn.BatchNorm2d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, num_classes)
        features = self.stages(self.stem(x))  # (N, 8 * width, H', W')
        return self.fc(torch.flatten(self.pool(features), 1))


def resnet18(num_classes: int, *, input_size: int = 32, norm: str = "group", groups: int = 32,
             in_channels: int = 3, width: int = 64) -> ResNet:
    """ResNet-18: BasicBlocks [2, 2, 2, 2], widths width * (1, 2, 4, 8).

    num_classes: outputs of the classifier. input_size: image side (32 CIFAR, 64 Tiny-ImageNet;
    > 64 selects the ImageNet stem). norm: "group" (default) or "batch". groups: GroupNorm
    groups (gcd with the channel count is used, so narrow widths work). width: stem channels,
    64 for the standard network (11.17M parameters with 10 classes); small values for tests.
    """
    _check_norm(norm)
    for name, value in (("num_classes", num_classes), ("input_size", input_size),
                        ("groups", groups), ("in_channels", in_channels), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} should be an int >= 1, but got {name}={value!r}")
    return ResNet((2, 2, 2, 2), num_classes, input_size=input_size, norm=norm, groups=groups,
                  in_channels=in_channels, width=width)
