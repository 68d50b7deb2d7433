"""What a hooked module call looks like to the meter: its arguments bound to the forward's
signature, the output that carries its gradient, when it runs, and the refusal of a call that
cannot be measured (``UnsupportedCall``)."""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn


class UnsupportedCall(ValueError):
    """Raised by a capture or rule for a call it cannot measure exactly; the hooks add the
    module's path to the message."""


def main_output(module: nn.Module, output: object) -> object:
    """The output that carries the gradient: a tensor, the first of a tuple whose other
    elements need none, the attention output of nn.MultiheadAttention."""
    if not isinstance(output, tuple) or not output:
        return output
    if isinstance(module, nn.MultiheadAttention) or not any(
            isinstance(o, Tensor) and o.requires_grad for o in output[1:]):
        return output[0]
    return output


def bind(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Keyword arguments that can be positional made positional: ``fc(input=x)`` -> ``(x,)``."""
    if not kwargs:
        return args, kwargs
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
    except TypeError:
        return args, kwargs
    return bound.args, bound.kwargs


def refuse_inside_backward(module: nn.Module, path: str) -> None:
    if torch._C._current_graph_task_id() != -1:
        raise ValueError(
            f"{path} ({type(module).__name__}) ran its forward during the backward pass: "
            "activation checkpointing (torch.utils.checkpoint) recomputes checkpointed layers "
            "there, and the recomputed call cannot be paired with the gradient of the original "
            "one; measure without checkpointing (turn it off on measured batches)")


def rule_failed(path: str, module: nn.Module, error: Exception) -> ValueError:
    return ValueError(f"{path} ({type(module).__name__}): taking its per-sample gradients failed "
                      f"({type(error).__name__}: {error}); freeze its parameters "
                      "(requires_grad_(False)) or measure without this module")
