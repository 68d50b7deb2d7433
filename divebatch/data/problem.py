"""What a training problem is (`Problem`), its per-sample loss and its accuracy count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

TASKS = ("regression", "binary", "multiclass")

@dataclass
class Problem:
    name: str
    task: str                      # one of TASKS
    x_train: Tensor                # (N, ...) on the device; uint8 for image datasets
    y_train: Tensor                # (N,) float for regression/binary, int64 for multiclass
    x_val: Tensor
    y_val: Tensor
    n_outputs: int                 # width of the model's last layer
    input_shape: tuple[int, ...]   # one sample's shape after `prepare`
    prepare: Callable[[Tensor, bool], Tensor] | None = None  # (raw batch, training) -> input
    rng: torch.Generator | None = None  # the randomness `prepare` draws on (checkpointed)

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    def inputs(self, raw: Tensor, training: bool) -> Tensor:
        return raw if self.prepare is None else self.prepare(raw, training)


def per_sample_loss(task: str) -> Callable[[Tensor, Tensor], Tensor]:
    """loss_fn(outputs, targets) -> per-sample losses (N,), as `per_sample_grad_sq_norms` wants."""
    return {"regression": _squared_error, "binary": _binary_xent,
            "multiclass": _multiclass_xent}[task]


def _squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
    return 0.5 * (outputs.squeeze(-1) - targets) ** 2


def _binary_xent(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(outputs.squeeze(-1), targets, reduction="none")


def _multiclass_xent(outputs: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(outputs, targets, reduction="none")


def correct_predictions(task: str, outputs: Tensor, targets: Tensor) -> Tensor | None:
    """Number of correct predictions in a batch (a 0-d tensor), None for regression."""
    if task == "binary":
        return ((outputs.squeeze(-1) > 0).to(targets.dtype) == targets).sum()
    if task == "multiclass":
        return (outputs.argmax(dim=-1) == targets).sum()
    return None
