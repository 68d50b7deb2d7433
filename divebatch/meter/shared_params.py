"""Parameters with several uses (tied weights): the exact norm of the sum of the uses.

A parameter held by two modules, such as a language model's token embedding and its output
layer (``lm_head.weight = wte.weight``), has per-sample gradient g_i = g_i^(wte) + g_i^(lm_head).
Its squared norm has a cross term 2 <g_i^(wte), g_i^(lm_head)>, so the uses cannot be measured
one by one: each use keeps its call and output gradient until backward is done, and then, for a
few samples at a time, every use's per-sample gradients are formed and added up.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from divebatch.meter.rules.sequence import embedding_per_sample_grads
from divebatch.meter.functional import functional_per_sample_grads
from divebatch.meter.kernels import PER_SAMPLE_GRADS_ELEMENTS, accumulation_dtype, sq_norms


class Use(NamedTuple):
    """One call of a module that holds a shared parameter, with its output gradient."""
    module: nn.Module
    params: dict[str, Tensor]  # the module's trainable parameters, by their name in it
    args: tuple
    kwargs: dict
    grad_out: Tensor


def _linear_per_sample_grads(linear: nn.Linear, x: Tensor, grad_out: Tensor) -> dict[str, Tensor]:
    n_samples = x.shape[0]
    x = x.reshape(n_samples, -1, x.shape[-1]).to(accumulation_dtype(x))
    grad_out = grad_out.reshape(n_samples, -1, grad_out.shape[-1]).to(x.dtype)
    grads = {"weight": torch.bmm(grad_out.transpose(1, 2), x)}
    if linear.bias is not None:
        grads["bias"] = grad_out.sum(1)
    return grads


def per_sample_grads(use: Use) -> dict[str, Tensor]:
    """{name: (N, *param.shape)} for the trainable parameters of one use."""
    if type(use.module) is nn.Linear:
        grads = _linear_per_sample_grads(use.module, use.args[0], use.grad_out)
    elif type(use.module) is nn.Embedding:
        grads = {"weight": embedding_per_sample_grads(use.module, use.args[0], use.grad_out)}
    else:
        grads = functional_per_sample_grads(use.module, use.args, use.kwargs, use.grad_out)
    return {name: g for name, g in grads.items() if name in use.params}


def _sample_rows(value: object, rows: slice, n_samples: int) -> object:
    batched = isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n_samples
    return value[rows] if batched else value


def _rows_of(use: Use, rows: slice) -> Use:
    n_samples = use.grad_out.shape[0]
    return use._replace(args=tuple(_sample_rows(a, rows, n_samples) for a in use.args),
                        kwargs={k: _sample_rows(v, rows, n_samples)
                                for k, v in use.kwargs.items()},
                        grad_out=use.grad_out[rows])


def shared_sq_norms(uses: list[Use]) -> Tensor:
    """(N,) squared norms of every sample's gradient of all parameters of these uses, each
    parameter's gradient summed over its uses; formed a few samples at a time."""
    n_samples = uses[0].grad_out.shape[0]
    distinct = {id(p): p for use in uses for p in use.params.values()}
    per_sample = sum(p.numel() for p in distinct.values())
    chunk = max(1, PER_SAMPLE_GRADS_ELEMENTS // max(1, per_sample))
    norms = []
    for start in range(0, n_samples, chunk):
        totals: dict[int, Tensor] = {}
        for use in uses:
            part = _rows_of(use, slice(start, start + chunk))
            for name, grad in per_sample_grads(part).items():
                key = id(use.params[name])
                totals[key] = grad if key not in totals else totals[key] + grad
        norms.append(sum(sq_norms(g) for g in totals.values()))
    return torch.cat(norms)
