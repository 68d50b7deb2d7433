"""Tensor memory of one training step, as ``benchmarks/diversity_overhead.py`` reports it: the
peak during the step, including what is alive before it (parameters, gradients, optimizer
state, the batch, a meter's running sums). On CUDA ``torch.cuda.max_memory_allocated()``; on CPU
the profiler's allocator events (``profile_memory=True``) give every allocation and free, and
their running sum gives the peak."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from divebatch.meter.diversity import DiversityMeter

Step = Callable[[], None]


def static_bytes(model: nn.Module, extra: list[Tensor]) -> int:
    """Tensor memory alive between steps: parameters with their gradients and whatever a
    method attaches to them (Opacus grad_sample, BackPACK batch_l2), optimizer state, batch."""
    tensors = {t.data_ptr(): t for t in extra}
    for param in model.parameters():
        for tensor in (param, param.grad, *vars(param).values()):
            if isinstance(tensor, Tensor):
                tensors[tensor.data_ptr()] = tensor
    return sum(t.numel() * t.element_size() for t in tensors.values())


def optimizer_and_meter_tensors(step: Step) -> list[Tensor]:
    """Tensors the step's closure keeps between steps (optimizer state, the meter's sums)."""
    found = []
    for cell in step.__closure__ or ():
        value = cell.cell_contents
        if isinstance(value, torch.optim.Optimizer):
            found += [t for state in value.state.values() for t in state.values()
                      if isinstance(t, Tensor)]
        elif isinstance(value, DiversityMeter):
            found += value.running_sums
    return found


def cpu_step_peak_bytes(step: Step) -> int:
    """Peak over one step of allocated minus freed bytes, from the profiler's allocator events."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # the raw allocator events (nbytes > 0 allocates, < 0 frees) in time order
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def peak_memory_bytes(step: Step, model: nn.Module, inputs: Tensor, targets: Tensor,
                      device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device)
    alive = static_bytes(model, [inputs, targets, *optimizer_and_meter_tensors(step)])
    return alive + cpu_step_peak_bytes(step)
