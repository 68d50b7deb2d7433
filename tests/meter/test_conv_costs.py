"""The Conv2d paths' cost model (divebatch.meter.rules.conv_costs): it reads the input's layout
(kernels.is_channels_last), and its cache never hides a different device's costs."""

import torch
from torch import nn

from divebatch.meter.rules import conv as conv_rules

DIGITS_STRIDED = dict(in_channels=32, out_channels=64, kernel_size=3, stride=2, padding=1,
                      bias=False)  # the digits CNN's 32 -> 64 layer: 8x8 in, 4x4 out


def test_a_channels_last_input_makes_the_patches_cheaper_and_the_pixels_dearer():
    conv = nn.Conv2d(**DIGITS_STRIDED)
    plain = conv_rules._weight_costs(conv, 128, 32, 4, 4)
    channels_last = conv_rules._weight_costs(conv, 128, 32, 4, 4, channels_last=True)
    assert channels_last.unfold_gram < plain.unfold_gram
    assert channels_last.pixel_gram > plain.pixel_gram
    assert (plain.choice(), channels_last.choice()) == ("pixel_gram", "unfold_gram")


def test_the_rule_chooses_by_its_inputs_layout(monkeypatch):
    taken = []
    for name in ("_conv2d_gram_sq_norms", "_conv2d_unfold_gram_sq_norms"):
        monkeypatch.setattr(conv_rules, name, lambda conv, x, grad_out, name=name:
                            taken.append(name) or torch.zeros(len(x)))
    conv = nn.Conv2d(**DIGITS_STRIDED)
    x, grad_out = torch.randn(128, 32, 8, 8), torch.randn(128, 64, 4, 4)
    as_channels_last = {"memory_format": torch.channels_last}
    with torch.no_grad():
        conv_rules._conv2d_weight_sq_norms(conv, x, grad_out)
        conv_rules._conv2d_weight_sq_norms(conv, x.contiguous(**as_channels_last),
                                           grad_out.contiguous(**as_channels_last))
    assert list(dict.fromkeys(taken)) == [  # once per chunk of samples
        "_conv2d_gram_sq_norms", "_conv2d_unfold_gram_sq_norms"]


def test_cached_costs_follow_the_device_costs_in_force(monkeypatch):
    conv = nn.Conv2d(64, 64, 3, padding=1)
    on_cpu = conv_rules._weight_costs(conv, 128, 64, 8, 8)  # now cached
    on_cuda = conv_rules._weight_costs(conv, 128, 64, 8, 8, device=torch.device("cuda"))
    assert on_cuda != on_cpu
    monkeypatch.setattr(conv_rules, "_uses_batched_matmul", lambda device: True)
    monkeypatch.setattr(conv_rules, "_device_costs",
                        lambda device: conv_rules.DEVICE_COSTS["cuda"])
    assert conv_rules._weight_costs(conv, 128, 64, 8, 8) == on_cuda
