"""Batched image augmentation and normalisation on the batch's own device (no torchvision).

The standard CIFAR recipe: pad by 4 with zeros, take a random 32x32 window, flip horizontally
with probability 1/2, then normalise per channel. Here it runs on a whole uint8 batch at once
(one gather, no per-sample Python loop), so it is as fast on a GPU as the data transfer.

>>> augmenter = Augmenter.for_dataset("cifar10", seed=0)
>>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
>>> augmenter(x).shape, augmenter(x).dtype
(torch.Size([8, 3, 32, 32]), torch.float32)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from divebatch.device_options import to_device

# Per-channel mean and std of the training images, pixel values scaled to [0, 1].
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
TINY_IMAGENET_MEAN, TINY_IMAGENET_STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)
NORMALIZATION = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD),
                 "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
                 "tiny_imagenet": (TINY_IMAGENET_MEAN, TINY_IMAGENET_STD)}
PADDING_MODES = ("zeros", "reflect")


def pad(x: torch.Tensor, padding: int, mode: str = "zeros") -> torch.Tensor:
    """Pad the last two dims of (N, C, H, W) by `padding` each side -> (N, C, H+2p, W+2p).

    Works for any dtype (uint8 included) on any device: "reflect" is done by indexing.
    """
    _check_padding(padding, mode)
    if mode == "zeros":
        return F.pad(x, (padding,) * 4)
    rows = _reflect_index(x.shape[-2], padding, x.device)  # (H+2p,)
    cols = _reflect_index(x.shape[-1], padding, x.device)  # (W+2p,)
    return x[..., rows[:, None], cols]


def _check_padding(padding: int, mode: str) -> None:
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode should be one of {', '.join(PADDING_MODES)}, "
                         f"but got padding_mode={mode!r}")
    if padding < 0:
        raise ValueError(f"padding should be an int >= 0, but got padding={padding}")


def _reflect_index(size: int, padding: int, device: torch.device) -> torch.Tensor:
    """Source index of each padded position, mirrored at the edges without repeating them."""
    if padding >= size:
        raise ValueError(f"reflect padding should be < image size {size}, "
                         f"but got padding={padding}")
    index = torch.arange(-padding, size + padding, device=device).abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4,
                     padding_mode: str = "zeros") -> torch.Tensor:
    """Per sample: pad, take a random HxW window, mirror it left-right with probability 1/2.

    x: (N, C, H, W) of any dtype; returns the same shape and dtype on x's device. The random
    numbers (3 per sample) are drawn on `generator`'s device and moved to x's device in one
    copy that does not block the host, so a CPU generator gives the same augmentation on every
    device and a GPU step never waits for it.
    """
    n, c, h, w = x.shape
    padded = pad(x, padding, padding_mode)  # (N, C, H+2p, W+2p)
    draws = torch.cat([  # one transfer: top, left, flip
        torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=generator.device),
        torch.randint(0, 2, (n, 1), generator=generator, device=generator.device)], dim=1)
    draws = to_device(draws, x.device)  # (N, 3)
    offsets, flips = draws[:, :2], draws[:, 2:].bool()  # (N, 2), (N, 1)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (N, W)
    cols = torch.where(flips, cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]  # (N, 1, 1, 1)
    channel = torch.arange(c, device=x.device)[None, :, None, None]  # (1, C, 1, 1)
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) in 0..255 -> float32 (x / 255 - mean[c]) / std[c]."""
    return _scale_and_shift(x, *channel_affine(mean, std, x.device))


def channel_affine(mean: Sequence[float], std: Sequence[float],
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, 1, 1) float32 scale and shift with x * scale + shift = (x / 255 - mean) / std."""
    mean = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    std = torch.tensor(std, dtype=torch.float64)[:, None, None]
    scale, shift = 1 / (255 * std), -mean / std
    return to_device(scale.float(), device), to_device(shift.float(), device)


def _scale_and_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(shift, x.to(torch.float32), scale)


class Augmenter:
    """What the trainer calls per batch: `augmenter(x_uint8) -> float batch`.

    Training batches get random crop + flip (if `crop_flip`) then normalisation; evaluation
    batches use `augmenter.normalize(x)`. It owns a CPU `torch.Generator` seeded with `seed`,
    so the sequence of augmentations is fixed by the seed, on any device.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, crop_flip: bool = True,
                 padding: int = 4, padding_mode: str = "zeros", seed: int = 0):
        _check_padding(padding, padding_mode)
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_flip = crop_flip
        self.padding = padding            # pixels added each side before cropping (CIFAR: 4)
        self.padding_mode = padding_mode  # "zeros" (standard CIFAR) or "reflect"
        self.generator = torch.Generator().manual_seed(seed)
        self._affine: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # per device

    @classmethod
    def for_dataset(cls, name: str, **kwargs) -> "Augmenter":
        """The augmenter with `name`'s channel statistics (a key of NORMALIZATION)."""
        if name not in NORMALIZATION:
            raise ValueError(f"name should be one of {', '.join(NORMALIZATION)}, "
                             f"but got name={name!r}")
        mean, std = NORMALIZATION[name]
        return cls(mean, std, **kwargs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch: uint8 (N, C, H, W) -> augmented, normalised float32 (N, C, H, W)."""
        if self.crop_flip:
            x = random_crop_flip(x, self.generator, self.padding, self.padding_mode)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """An evaluation batch: uint8 (N, C, H, W) -> normalised float32, no randomness."""
        if x.device not in self._affine:  # made once per device: no transfer per batch
            self._affine[x.device] = channel_affine(self.mean, self.std, x.device)
        return _scale_and_shift(x, *self._affine[x.device])
