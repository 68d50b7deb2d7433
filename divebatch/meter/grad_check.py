"""The guard against what the per-layer rules cannot see: the batch gradient they account for.

The rules see a parameter only through the calls of the module that holds it. If a parameter
also gets gradient some other way (``F.linear(h, self.wte.weight)``, a weight used outside its
module's forward), its per-sample norms miss that part. So on a checked batch every call keeps
its arguments and output gradient; the module is re-run on them and its vector-Jacobian product
gives the batch gradient those calls explain, which must equal ``param.grad``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from divebatch.meter.calls import rerun

# Relative difference ||explained - param.grad|| / ||param.grad|| above which a parameter is
# refused, by the dtype of the output gradients its calls received: rounding in float64 and
# float32, and in bfloat16/float16 under autocast (where the re-run may be in float32).
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3}
LOW_PRECISION_TOLERANCE = 5e-2


def explained_grads(module: torch.nn.Module, params: dict[str, Tensor], args: tuple,
                    kwargs: dict, grad_outs: list[Tensor],
                    buffers: dict[str, Tensor] | None = None) -> list[dict[str, Tensor]]:
    """{name: gradient} of one module call's own parameters, for each output gradient;
    ``buffers``: the module's buffers before the call (default: as they are)."""
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    # copies, so that a re-run in training mode leaves running statistics alone
    buffers = dict(module.named_buffers()) if buffers is None else buffers
    buffers = {name: b.clone() for name, b in buffers.items()}
    # contiguous: GroupNorm's CPU backward for the parameters alone crashes on a channels-last
    # input (torch 2.13); the layout does not change the values
    detach = lambda value: (value.detach().contiguous()  # noqa: E731
                            if isinstance(value, Tensor) else value)
    explained = []
    with torch.enable_grad():
        output = rerun(module, {**buffers, **leaves}, tuple(map(detach, args)),
                       {k: detach(v) for k, v in kwargs.items()})
        output = output[0] if isinstance(output, tuple) else output
        if output.shape != grad_outs[0].shape:  # a shared call's output, expanded over the batch
            output = output.expand(grad_outs[0].shape)
        for grad_out in grad_outs:
            grad_out = torch.empty_like(output).copy_(grad_out)  # laid out like the output
            grads = torch.autograd.grad(output, list(leaves.values()), grad_out,
                                        allow_unused=True, retain_graph=True)
            explained.append({name: g for name, g in zip(leaves, grads) if g is not None})
    return explained


def relative_difference(explained: Tensor | None, actual: Tensor) -> float:
    actual = actual.to_dense().double()
    explained = torch.zeros_like(actual) if explained is None else explained.double()
    scale = float(torch.linalg.vector_norm(actual))
    return float(torch.linalg.vector_norm(explained - actual)) / max(scale, 1e-300)


def tolerance(grad_out: Tensor) -> float:
    return TOLERANCE.get(grad_out.dtype, LOW_PRECISION_TOLERANCE)
