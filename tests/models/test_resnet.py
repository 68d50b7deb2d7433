"""ResNet-18: shapes, the standard parameter count, normalisation choice, init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from divebatch.models.resnet import resnet18


def modules_of(model: nn.Module, kind) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("size, num_classes, in_channels", [(32, 10, 3), (64, 200, 3),
                                                            (8, 10, 1), (128, 5, 3)])
def test_output_shapes(size, num_classes, in_channels):
    model = resnet18(num_classes, input_size=size, in_channels=in_channels, width=8)
    out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, num_classes)


def test_stems():
    cifar = resnet18(10, input_size=64, width=8)
    assert cifar.stem[0].kernel_size == (3, 3) and cifar.stem[0].stride == (1, 1)
    assert not modules_of(cifar, nn.MaxPool2d)
    imagenet = resnet18(10, input_size=128, width=8)
    assert imagenet.stem[0].kernel_size == (7, 7) and modules_of(imagenet, nn.MaxPool2d)


def test_standard_parameter_count():
    """The usual CIFAR ResNet-18 (width 64, 10 classes) has 11,173,962 parameters."""
    model = resnet18(10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    assert len(modules_of(model, nn.Conv2d)) == 20  # stem + 16 block convs + 3 shortcuts


def test_group_norm_by_default_batch_norm_on_request():
    group = resnet18(10, width=16)
    assert group.norm == "group" and modules_of(group, nn.GroupNorm)
    assert not modules_of(group, nn.BatchNorm2d)
    assert {m.num_groups for m in modules_of(group, nn.GroupNorm)} == {16, 32}  # gcd(32, C)
    assert {m.num_groups for m in modules_of(resnet18(10, width=64), nn.GroupNorm)} == {32}
    batch = resnet18(10, norm="batch", width=16)
    assert modules_of(batch, nn.BatchNorm2d) and not modules_of(batch, nn.GroupNorm)


def test_group_norm_keeps_samples_independent():
    """Needed for exact per-sample gradients: a sample's output ignores its batch-mates."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    group, batch = resnet18(10, width=8), resnet18(10, width=8, norm="batch")
    assert torch.allclose(group(x)[:1], group(x[:1]), atol=1e-5)
    assert not torch.allclose(batch(x)[:2], batch(x[:2]), atol=1e-3)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="norm should be one of group, batch, but got "
                                         "norm='layer'"):
        resnet18(10, norm="layer")
    with pytest.raises(ValueError, match="width=0"):
        resnet18(10, width=0)
    with pytest.raises(ValueError, match="num_classes"):
        resnet18(0)


def test_kaiming_init_and_backward():
    torch.manual_seed(0)
    model = resnet18(10, width=32)
    conv = model.stages[-1].conv2  # 256 -> 256, 3x3: fan_out = 256 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.05)
    norm = modules_of(model, nn.GroupNorm)[0]
    assert torch.equal(norm.weight, torch.ones_like(norm.weight))
    loss = nn.functional.cross_entropy(model(torch.randn(3, 3, 32, 32)), torch.tensor([0, 1, 2]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
