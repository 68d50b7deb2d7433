"""The meter on third-party architectures (``zoo_cases``): exact or refused by name, never wrong,
never changing the model.

For every case, in float64:
- ``per_sample_grad_sq_norms`` equals a loop oracle within 1e-6 relative error, or raises a
  ``ValueError`` naming a module (``path (Type)``) - no other exception. The oracle runs one
  sample at a time through the model (eval mode), or, where dropout or stochastic depth draw
  random numbers (training mode), differentiates each sample's loss of one seeded batch
  forward, so that it sees the masks the meter sees.
- ``DiversityMeter`` gives the same verdict; when exact, ``diversity()`` of its third measured
  batch (unchecked: the hooks' direct path, on hooks kept from the second) equals the oracle's
  sum_i ||g_i||^2 / ||sum_i g_i||^2, and the outputs and every ``param.grad`` equal those of the
  same step without the meter; when refused, the model afterwards computes what it did before.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from divebatch.meter.diversity import DiversityMeter, per_sample_grad_sq_norms
from tests.helpers.zoo_cases import CASES, Case, names_a_module

REL_TOL = 1e-6
SEED = 1234  # every forward draws dropout masks from this seed


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def per_sample_loss(outputs: Tensor, targets: Tensor) -> Tensor:  # (N, ...) -> (N,)
    return 0.5 * (outputs - targets).square().flatten(1).sum(1)


def seeded_forward(model: nn.Module, inputs: Tensor) -> Tensor:
    torch.manual_seed(SEED)
    return model(inputs)


def trainable(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def plain_step(model: nn.Module, inputs: Tensor, targets: Tensor) -> tuple[Tensor, list]:
    model.zero_grad(set_to_none=True)
    outputs = seeded_forward(model, inputs)
    per_sample_loss(outputs, targets).mean().backward()
    return outputs.detach(), [p.grad for p in trainable(model)]


def oracle(model: nn.Module, inputs: Tensor, targets: Tensor, random: bool,
           ) -> tuple[Tensor, list[Tensor]]:
    """(N,) ||g_i||^2 and sum_i g_i, one sample's gradient at a time."""
    params = trainable(model)
    if random:  # the masks of one seeded batch forward, each sample's loss differentiated
        losses = per_sample_loss(seeded_forward(model, inputs), targets)
        loss_of = lambda i: losses[i]  # noqa: E731
    else:
        loss_of = lambda i: per_sample_loss(model(inputs[i:i + 1]), targets[i:i + 1]).sum()  # noqa: E731
    sq_norms, grad_sum = [], [torch.zeros_like(p) for p in params]
    for i in range(len(inputs)):
        grads = torch.autograd.grad(loss_of(i), params, retain_graph=random, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        sq_norms.append(sum(g.square().sum() for g in grads))
        for total, g in zip(grad_sum, grads):
            total += g
    return torch.stack(sq_norms), grad_sum


def relative_error(actual: Tensor, expected: Tensor) -> float:
    if torch.equal(actual, expected):  # zeros too (an unused mask token's gradient)
        return 0.0
    return float((actual - expected).abs().max() / expected.abs().max())


def meter_step(model: nn.Module, inputs: Tensor, targets: Tensor):
    """The meter's third measured batch as the trainer measures it (keep_hooks): on the hooks'
    direct path, with the hooks the second batch left, after the first, checked batch."""
    with DiversityMeter(model, keep_hooks=True) as meter:
        for _ in range(3):
            meter.reset()
            model.zero_grad(set_to_none=True)
            with meter.track(len(inputs)):
                outputs = seeded_forward(model, inputs)
                per_sample_loss(outputs, targets).mean().backward()
        return outputs.detach(), [p.grad for p in trainable(model)], meter.diversity()


def build(case: Case) -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    model = case.build().double().train(case.train)
    generator = torch.Generator().manual_seed(0)
    inputs = case.inputs(generator)
    with torch.no_grad():
        shape = seeded_forward(model, inputs).shape
    return model, inputs, torch.randn(shape, generator=generator)


def outcome(call) -> tuple[object, ValueError | None]:
    """(what ``call`` returned, None) or (None, the ValueError it raised)."""
    try:
        return call(), None
    except ValueError as error:
        return None, error


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_zoo_case_is_exact_or_refused_by_name(case: Case):
    model, inputs, targets = build(case)
    plain_outputs, plain_grads = plain_step(model, inputs, targets)

    def norms():
        torch.manual_seed(SEED)
        return per_sample_grad_sq_norms(model, per_sample_loss, inputs, targets)

    sq_norms, function_refusal = outcome(norms)
    meter_result, meter_refusal = outcome(lambda: meter_step(model, inputs, targets))
    verdict = "refused" if function_refusal else "exact"
    assert (meter_refusal is None) == (function_refusal is None), (function_refusal,
                                                                   meter_refusal)
    assert verdict == case.expect, f"{case.name}: {verdict}: {function_refusal}"
    if function_refusal is not None:
        for error in (function_refusal, meter_refusal):
            assert names_a_module(str(error), model), str(error)
            assert all(word in str(error) for word in case.refusal), str(error)
        outputs, grads = plain_step(model, inputs, targets)  # nothing left behind
        assert torch.equal(outputs, plain_outputs)
        return
    expected_norms, grad_sum = oracle(model, inputs, targets, random=case.train)
    assert relative_error(sq_norms, expected_norms) <= REL_TOL
    outputs, grads, diversity = meter_result
    assert torch.equal(outputs, plain_outputs)
    for grad, plain_grad in zip(grads, plain_grads):
        assert (grad is None) == (plain_grad is None)
        if grad is not None:
            assert relative_error(grad, plain_grad) <= 1e-10
    expected = float(expected_norms.sum() / sum(g.square().sum() for g in grad_sum))
    assert abs(diversity - expected) <= REL_TOL * expected
