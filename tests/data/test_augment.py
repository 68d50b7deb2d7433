"""Batched crop + flip and normalisation, checked against slow per-sample oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from divebatch.data.augment import (CIFAR10_MEAN, CIFAR10_STD, NORMALIZATION, Augmenter, normalize,
                               pad, random_crop_flip)


def random_images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def oracle_padded(image: np.ndarray, padding: int, mode: str) -> np.ndarray:
    """(C, H, W) -> (C, H+2p, W+2p) with numpy's own padding."""
    width = ((0, 0), (padding, padding), (padding, padding))
    return np.pad(image, width, mode="constant" if mode == "zeros" else "reflect")


def matching_windows(image: np.ndarray, output: np.ndarray, padding: int, mode: str):
    """Slow oracle: every (top, left, flipped) whose window of the padded image equals output."""
    padded = oracle_padded(image, padding, mode)
    c, h, w = image.shape
    windows = sliding_window_view(padded, (h, w), axis=(1, 2))  # (C, 2p+1, 2p+1, H, W)
    matches = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            window = windows[:, top, left]  # (C, H, W)
            for flipped, candidate in ((False, window), (True, window[:, :, ::-1])):
                if np.array_equal(candidate, output):
                    matches.append((top, left, flipped))
    return matches


def test_shapes_and_dtypes_are_kept():
    generator = torch.Generator().manual_seed(0)
    x = random_images(5, size=32)
    out = random_crop_flip(x, generator)
    assert out.shape == x.shape and out.dtype == torch.uint8
    out = random_crop_flip(x.float(), generator, padding=2, padding_mode="reflect")
    assert out.shape == x.shape and out.dtype == torch.float32


def test_same_seed_same_augmentation():
    x = random_images(64, size=32)
    first = random_crop_flip(x, torch.Generator().manual_seed(7))
    again = random_crop_flip(x, torch.Generator().manual_seed(7))
    other = random_crop_flip(x, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_every_crop_is_a_window_of_the_padded_image(mode):
    x = random_images(600)
    out = random_crop_flip(x, torch.Generator().manual_seed(1), padding=4, padding_mode=mode)
    positions = set()
    for image, output in zip(x.numpy(), out.numpy()):
        matches = matching_windows(image, output, 4, mode)
        assert matches, "output is not a (flipped) window of the padded image"
        positions.update((top, left) for top, left, _ in matches)
    assert len(positions) == 81  # every offset in 0..8 x 0..8 occurs


def test_flips_are_exact_mirrors_and_about_half():
    x = random_images(2000)
    out = random_crop_flip(x, torch.Generator().manual_seed(2), padding=0)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 0.45 < mirrored.float().mean().item() < 0.55


def test_pad_matches_numpy():
    x = random_images(3)
    for mode in ("zeros", "reflect"):
        expected = np.stack([oracle_padded(image, 3, mode) for image in x.numpy()])
        assert np.array_equal(pad(x, 3, mode).numpy(), expected)


def test_invalid_padding():
    x = random_images(2)
    generator = torch.Generator()
    with pytest.raises(ValueError, match="padding_mode"):
        random_crop_flip(x, generator, padding_mode="edge")
    with pytest.raises(ValueError, match="padding=-1"):
        random_crop_flip(x, generator, padding=-1)
    with pytest.raises(ValueError, match="padding=8"):
        random_crop_flip(x, generator, padding=8, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        Augmenter(CIFAR10_MEAN, CIFAR10_STD, padding_mode="wrap")


def test_normalize():
    x = random_images(4)
    out = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    assert out.dtype == torch.float32
    for c in range(3):
        expected = (x[:, c].double() / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        assert torch.allclose(out[:, c].double(), expected, atol=1e-5)


def test_augmenter_is_deterministic_per_seed():
    x = random_images(32, size=32)
    first = Augmenter.for_dataset("cifar10", seed=3)
    again = Augmenter.for_dataset("cifar10", seed=3)
    batches = [first(x), first(x)]
    assert torch.equal(batches[0], again(x)) and torch.equal(batches[1], again(x))
    assert not torch.equal(batches[0], batches[1])  # the generator advances per batch
    assert batches[0].dtype == torch.float32 and batches[0].shape == x.shape


def test_augmenter_eval_and_no_crop():
    x = random_images(8)
    mean, std = NORMALIZATION["tiny_imagenet"]
    expected = normalize(x, mean, std)
    assert torch.equal(Augmenter(mean, std, crop_flip=False)(x), expected)
    assert torch.equal(Augmenter(mean, std).normalize(x), expected)
    with pytest.raises(ValueError, match="name should be one of"):
        Augmenter.for_dataset("mnist")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_for_the_same_seed():
    x = random_images(256, size=32)
    for mode in ("zeros", "reflect"):
        cpu = Augmenter.for_dataset("cifar100", seed=4, padding_mode=mode)(x)
        gpu = Augmenter.for_dataset("cifar100", seed=4, padding_mode=mode)(x.cuda())
        assert gpu.device.type == "cuda"
        assert torch.allclose(gpu.cpu(), cpu, atol=1e-6)
