"""What measuring costs: the time of the layers' rules during backward (``SqNormHooks.seconds``,
added up by ``DiversityMeter.seconds``).

A fused Conv2d rule (``divebatch.meter.rules.conv``) also forms the batch weight gradient that
autograd skipped, so only its share beyond that gradient, by the cost model, counts as measuring.
The time is the host's wall time: on CUDA, what launching the kernels took, without synchronising.
"""

from __future__ import annotations

import time

from torch import Tensor, nn

from divebatch.meter.rules import conv

# Layer type -> the share of its fused rule's time that measuring adds.
FUSED_EXCESS = {nn.Conv2d: conv.fused_excess_share}


def timed_output_grad(hooks, module: nn.Module, grad_out: Tensor) -> None:
    """``hooks.on_output_grad(module, grad_out)``, its time added to ``hooks.seconds``."""
    started = time.perf_counter()
    fused_input = hooks.fused_input(module)
    hooks.on_output_grad(module, grad_out)
    elapsed = time.perf_counter() - started
    if fused_input is not None:
        elapsed *= measuring_share(module, fused_input, grad_out)
    hooks.seconds += elapsed


def measuring_share(module: nn.Module, fused_input: Tensor, grad_out: Tensor) -> float:
    """The share of a fused rule's time that measuring added (``FUSED_EXCESS``)."""
    return FUSED_EXCESS[type(module)](module, fused_input, grad_out)
