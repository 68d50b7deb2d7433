"""What training does differently on CUDA, in one place.

- Precision: float32 by default (``amp`` and ``channels_last`` off). On an H200 (issue 14:
  CIFAR-10 ResNet-18 with GroupNorm, B = 128, 50,000 images, torch 2.11) bf16 autocast with
  channels-last took 5.6-5.9 s per plain epoch against 4.2-4.6 s in float32, and 12.5-15.5 s
  against 11.1-13.0 s measuring diversity every epoch; no batch size or norm was measured where
  bf16 won against float32, so float32 is the default everywhere. ``--amp --channels-last``
  turn bf16 on (per-sample norms are still summed in float32).
- Optimizer: SGD's fused kernel on CUDA (one launch updates every parameter); elsewhere torch's
  default (foreach where supported).
- Host-to-device copies of small index tensors go through pinned memory without blocking, so
  that a training step never waits for the GPU (the progress polls and the epoch's end aside).
- ``compile_forward``: the model's forward through ``torch.compile`` on batches whose
  per-sample norms are not measured; measured batches run eagerly, so the per-layer hooks see
  exactly what they see without it. Off by default: not yet measured to be a win.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def make_optimizer(params: Iterable[nn.Parameter], *, lr: float, momentum: float,
                   weight_decay: float, device: torch.device) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           fused=True if device.type == "cuda" else None)


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``; a CPU tensor bound for CUDA is copied from pinned memory
    without blocking the host (the caching host allocator keeps the pinned block alive until
    the copy has run)."""
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def plain_forward_model(model: nn.Module, compile_forward: bool) -> nn.Module:
    """What runs batches whose per-sample norms are not measured: ``torch.compile(model)``
    (sharing the model's parameters) if ``compile_forward``, else the model itself."""
    return torch.compile(model) if compile_forward else model


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device should be auto or cpu on this machine (no CUDA), "
                         "but got device='cuda'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device should be auto or cpu on this machine (no MPS), "
                         "but got device='mps'")
    return torch.device(name)


def out_of_memory(error: RuntimeError) -> bool:
    """Whether `error` is the device running out of memory (torch.OutOfMemoryError, or a
    backend's RuntimeError that says so)."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()
