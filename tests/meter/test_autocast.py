"""The meter under autocast (bf16, on the CPU here; the trainer's ``amp`` does the same on CUDA):
the forward in low precision, backward inside the autocast block or after it (as the trainer
does). The rules sum in float32 with autocast off; a module re-run through torch.func, and every
call the first batch's check re-runs, runs under the autocast its call ran under; the check's
tolerance is that of the least precise call.

Oracle: each sample's gradient alone under the same autocast. Both round to bf16 in different
places, so they agree to about 1e-3, not to float64's 1e-8.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from divebatch.models.gpt import GPT, token_losses

REL_TOL = 2e-2


class Scale(nn.Module):
    """A layer without a rule (torch.func): a learned gain per feature."""

    def __init__(self, features):
        super().__init__()
        self.gain = nn.Parameter(torch.rand(features) + 0.5)

    def forward(self, x):
        return x * self.gain


def class_losses(outputs, targets):
    return F.cross_entropy(outputs.float(), targets, reduction="none")


def mlp_case():
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), Scale(8), nn.Linear(8, 3))
    return model, torch.randn(5, 6), torch.randint(0, 3, (5,)), class_losses


def plain_mlp_case():
    """Unchecked batches of a plain Sequential run without layer hooks (meter.sequential); its
    first layer takes sequences (the rule's batched products)."""
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Flatten(), nn.Linear(32, 8), nn.Tanh(),
                          nn.Linear(8, 3))
    return model, torch.randn(5, 4, 6), torch.randint(0, 3, (5,)), class_losses


def gpt_case():
    model = GPT(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)
    return model, torch.randint(0, 11, (4, 8)), torch.randint(0, 11, (4, 8)), token_losses


CASES = {"mlp": mlp_case, "plain_mlp": plain_mlp_case, "gpt": gpt_case}


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def loop_under_autocast(model, loss_fn, inputs, targets):
    params = list(model.parameters())
    sq_norms = []
    for i in range(len(inputs)):
        with bf16():
            loss = loss_fn(model(inputs[i:i + 1]), targets[i:i + 1]).sum()
        grads = torch.autograd.grad(loss, params)
        sq_norms.append(sum(g.double().square().sum() for g in grads))
    return torch.stack(sq_norms)


def relative_error(actual, expected):
    return float(((actual.double() - expected) / expected).abs().max())


@pytest.mark.parametrize("case", CASES)
def test_per_sample_norms_under_autocast_match_the_loop(case):
    torch.manual_seed(0)
    model, inputs, targets, loss_fn = CASES[case]()
    expected = loop_under_autocast(model, loss_fn, inputs, targets)
    with bf16():
        sq_norms = per_sample_grad_sq_norms(model, loss_fn, inputs, targets)
    assert sq_norms.dtype == torch.float32  # summed in float32, not in bf16
    assert relative_error(sq_norms, expected) < REL_TOL


@pytest.mark.parametrize("backward_inside", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_the_meter_under_autocast_matches_the_loop(case, backward_inside):
    """Three batches (the checked one, then the direct path on kept hooks): the third's
    diversity against the loop's."""
    torch.manual_seed(0)
    model, inputs, targets, loss_fn = CASES[case]()
    meter = DiversityMeter(model, keep_hooks=True)
    for _ in range(3):
        meter.reset()
        model.zero_grad()
        with meter.track(len(inputs)):
            with bf16():
                loss = loss_fn(model(inputs), targets).mean()
                if backward_inside:
                    loss.backward()
            if not backward_inside:
                loss.backward()
    meter.detach()
    expected = loop_under_autocast(model, loss_fn, inputs, targets)
    grad_sum_sq = sum(p.grad.double().square().sum() for p in model.parameters())
    expected_diversity = float(expected.sum() / (len(inputs) ** 2 * grad_sum_sq))
    assert abs(meter.diversity() - expected_diversity) < REL_TOL * expected_diversity
