"""The patches a Conv2d reads (divebatch.meter.rules.conv_patches): each way of unfolding them
against F.unfold, for every Conv2d case and both memory layouts; the unfold-Gram rule, which
takes its patches with the channels last, against the per-sample loop on a channels-last input
(the digits CNN's layout)."""

import pytest
import torch

from divebatch.meter.rules import conv as conv_rules, conv_patches
from tests.helpers.oracles import float64  # noqa: F401  (the autouse float64 fixture)
from tests.helpers.oracles import (CONV_CASES, assert_close, conv_without_bias,
                                   weight_sq_norms_by_loop)

LAYOUTS = {"plain": torch.contiguous_format, "channels_last": torch.channels_last}


def case_and_input(case, layout):
    conv = conv_without_bias(case)
    x = torch.randn(3, 4, 7, 6).contiguous(memory_format=LAYOUTS[layout])
    return conv, x, conv(x).shape[2:]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_every_unfolding_gives_f_unfolds_patches(case, layout):
    conv, x, (out_height, out_width) = case_and_input(case, layout)
    unfolded = conv_patches.unfold_like_conv(conv, x)  # (N, C_in kh kw, T), channels outermost
    assert_close(conv_patches.unfold_by_windows(conv, x, out_height, out_width), unfolded)
    groups, kernel = conv.groups, conv.kernel_size[0] * conv.kernel_size[1]
    channels_last = unfolded.view(3, groups, -1, kernel, out_height * out_width).permute(
        0, 1, 4, 3, 2).reshape(3 * groups, out_height * out_width, -1)
    assert_close(conv_patches.patches_last(conv, x, out_height, out_width), channels_last)


@pytest.mark.parametrize("case", CONV_CASES)
def test_the_unfold_gram_rule_on_a_channels_last_input_matches_the_loop(case):
    conv, x, _ = case_and_input(case, "channels_last")
    grad_out = torch.randn_like(conv(x))
    expected = weight_sq_norms_by_loop(conv, x, grad_out)
    with torch.no_grad():
        assert_close(conv_rules._conv2d_unfold_gram_sq_norms(conv, x, grad_out), expected)
