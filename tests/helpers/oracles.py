"""The meter's oracles and what their tests share: per-sample gradients one sample at a time
through ``torch.autograd.grad`` (obviously correct, and independent of the hooks and per-layer
rules under test), float64 throughout (the `float64` fixture: import it into a test module
to make it autouse there), a relative-error check at REL_TOL, and the Conv2d cases."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

REL_TOL = 1e-8  # the rules must agree with the oracle to this relative error


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


def cross_entropy(outputs, targets):  # (N, K), (N,) -> (N,)
    return F.cross_entropy(outputs, targets, reduction="none")


def loop_oracle(model, loss_fn, inputs, targets):
    """(N,) ||g_i||^2 and [sum_i g_i] over trainable parameters, one sample at a time."""
    params = [p for p in model.parameters() if p.requires_grad]
    sq_norms, grad_sum = [], [torch.zeros_like(p) for p in params]
    for i in range(len(inputs)):
        loss = loss_fn(model(inputs[i:i + 1]), targets[i:i + 1]).sum()
        grads = torch.autograd.grad(loss, params)
        sq_norms.append(sum(g.square().sum() for g in grads))
        for total, g in zip(grad_sum, grads):
            total += g
    return torch.stack(sq_norms), grad_sum


def batch_oracle(model, loss_fn, inputs, targets):
    """(N,) ||g_i||^2 and [sum_i g_i] over trainable parameters from one batch forward, each
    sample's loss differentiated: for models that do not mix samples but whose every call
    changes their state (a spectral norm's power iteration), where ``loop_oracle``'s one forward
    per sample would see a different model each time."""
    params = [p for p in model.parameters() if p.requires_grad]
    losses = loss_fn(model(inputs), targets)
    sq_norms, grad_sum = [], [torch.zeros_like(p) for p in params]
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        sq_norms.append(sum(g.square().sum() for g in grads))
        for total, g in zip(grad_sum, grads):
            total += g
    return torch.stack(sq_norms), grad_sum


def assert_close(actual, expected):
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    error = (actual - expected).abs().max() / expected.abs().max()
    assert error < REL_TOL, f"relative error {float(error):.2e}: {actual} vs {expected}"


def conv_model(**conv_kwargs):
    """Conv2d under test between a GroupNorm/in-place ReLU stem and a linear head; 6x6 input."""
    conv = nn.Conv2d(4, 8, **conv_kwargs)
    with torch.no_grad():
        features = conv(torch.zeros(1, 4, 6, 6)).numel()
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(inplace=True),
                         conv, nn.Tanh(), nn.Flatten(), nn.Linear(features, 5))


CONV_CASES = {
    "plain": dict(kernel_size=3),
    "padded": dict(kernel_size=3, padding=1),
    "strided": dict(kernel_size=3, stride=2, padding=1),
    "dilated": dict(kernel_size=3, padding=2, dilation=2),
    "grouped": dict(kernel_size=3, padding=1, groups=2, bias=False),
    "depthwise": dict(kernel_size=(3, 1), padding=(1, 0), groups=4),
    "reflect_same": dict(kernel_size=2, padding="same", padding_mode="reflect"),
    "circular_strided": dict(kernel_size=3, stride=(2, 1), padding=1, padding_mode="circular"),
}


def conv_without_bias(case):
    return nn.Conv2d(4, 8, bias=False, **{k: v for k, v in CONV_CASES[case].items()
                                          if k != "bias"})


def weight_sq_norms_by_loop(conv, x, grad_out):
    """||d/dW sum(conv(x_i) * grad_out_i)||^2 for each sample i, one at a time."""
    return torch.stack([
        torch.autograd.grad((conv(x[i:i + 1]) * grad_out[i:i + 1]).sum(), conv.weight)[0]
        .square().sum() for i in range(len(x))])


def image_batch(n=5):
    return torch.randn(n, 3, 6, 6), torch.randint(0, 5, (n,))
