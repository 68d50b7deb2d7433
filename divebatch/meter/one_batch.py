"""Per-sample squared gradient norms and gradient diversity of one batch, from one forward and
one backward pass with the meter's hooks (``divebatch.meter.hooks``); every call checks the
split into samples. ``divebatch.meter.diversity`` re-exports them beside ``DiversityMeter``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from divebatch.meter.broadcast import expansions_named
from divebatch.meter.hooks import SqNormHooks
from divebatch.meter.owners import Layers, batchnorm_layers, check_batchnorm, parameter_owners

EPS = 1e-12  # added to ||G||^2 in Delta_hat = S / (||G||^2 + EPS): a zero gradient stays finite


def _norms_and_gradient(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                        inputs: Tensor, targets: Tensor, allow_batchnorm: bool,
                        ) -> tuple[Tensor, list[Tensor | None]]:
    """(N,) ||g_i||^2 and the batch gradient sum_i g_i per trainable parameter, one backward."""
    approximate = check_batchnorm(batchnorm_layers(model), allow_batchnorm)
    layers = Layers(parameter_owners(model))
    params = list(layers.owners)
    hooks = SqNormHooks(model, layers, check=True, mixing_allowed=approximate)
    if hooks.weighing is not None:
        hooks.weighing.on_losses = True
    with hooks, expansions_named(hooks.expanded):
        losses = loss_fn(model(inputs), targets)
        if losses.dim() != 1 or len(losses) != len(inputs):
            raise ValueError(f"loss_fn should return per-sample losses of shape [{len(inputs)}] "
                             f"(reduction='none'), but got shape {list(losses.shape)}")
        if hooks.weighing is not None:
            hooks.weighing.watch_losses(losses)
        grads = _batch_gradient(losses, params, hooks)
        hooks.check_grads_seen(params, grads)
        hooks.check_batch_gradient(params, grads)
    sq_norms = hooks.sq_norms if hooks.sq_norms is not None else losses.new_zeros(len(losses))
    return sq_norms.detach(), grads


def _batch_gradient(losses: Tensor, params: list[Tensor], hooks: SqNormHooks,
                    ) -> list[Tensor | None]:
    """d(sum of losses)/d(params). ``torch.autograd.grad`` refuses a reentrant activation
    checkpoint on the way to a parameter: the checkpointed layers, which ran without
    gradients, are then refused by name, as when the checkpoint leads to no parameter."""
    if not params:
        return []
    try:
        return list(torch.autograd.grad(losses.sum(), params, allow_unused=True))
    except RuntimeError as error:
        if "use_reentrant=True" not in str(error):
            raise
        hooks.check_grads_seen(params, [None] * len(params))  # names the checkpointed layers
        raise ValueError("a layer runs in reentrant activation checkpointing "
                         "(torch.utils.checkpoint(use_reentrant=True)), whose backward "
                         "torch.autograd.grad refuses; measure without checkpointing") from None


def per_sample_grad_sq_norms(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                             inputs: Tensor, targets: Tensor, *,
                             allow_batchnorm: bool = False) -> Tensor:
    """||g_i||^2 for each sample i, where g_i is the gradient of ``loss_fn(...)[i]``.

    ``loss_fn(outputs, targets)`` returns per-sample losses of shape [N]. Uses one forward and
    one backward pass and leaves ``param.grad`` untouched.

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(1.0)
    >>> loss_fn = lambda out, y: 0.5 * (out.squeeze(1) - y) ** 2
    >>> inputs, targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.zeros(2)
    >>> per_sample_grad_sq_norms(model, loss_fn, inputs, targets)  # g_i = (w.x_i) x_i
    tensor([ 1., 16.])
    """
    return _norms_and_gradient(model, loss_fn, inputs, targets, allow_batchnorm)[0]


def gradient_diversity(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                       inputs: Tensor, targets: Tensor, *, allow_batchnorm: bool = False) -> float:
    """Delta = sum_i ||g_i||^2 / ||sum_i g_i||^2 over this batch (1/N when all g_i are equal).

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 1, bias=False)
    >>> loss_fn = lambda out, y: out.squeeze(1) * y
    >>> inputs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # orthogonal per-sample gradients
    >>> gradient_diversity(model, loss_fn, inputs, torch.ones(2))
    1.0
    >>> gradient_diversity(model, loss_fn, inputs.new_ones(4, 2), torch.ones(4))  # equal ones
    0.25
    """
    sq_norms, grads = _norms_and_gradient(model, loss_fn, inputs, targets, allow_batchnorm)
    grad_sq_norm = sum(g.double().square().sum() for g in grads if g is not None)
    return float(sq_norms.double().sum() / (grad_sq_norm + EPS))  # as DiversityMeter's
