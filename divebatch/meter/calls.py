"""What a hooked module call looks like to the meter: its arguments bound to the forward's
signature, the output that carries its gradient, when it runs, and the refusal of a call that
cannot be measured (``UnsupportedCall``)."""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn
from torch.func import functional_call


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


class _ForwardOnly(nn.Module):
    """Calls ``module``'s forward pre-hooks for what they set on it, then its forward."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: object, **kwargs: object) -> object:
        module = self.module
        for hook_id, hook in module._forward_pre_hooks.items():
            if hook_id in module._forward_pre_hooks_with_kwargs:
                hook(module, args, kwargs)
            else:
                hook(module, args)
        return module.forward(*args, **kwargs)


def rerun(module: nn.Module, state: dict[str, Tensor], args: tuple, kwargs: dict) -> object:
    """``torch.func.functional_call`` of the call the meter saw: its arguments as the forward
    got them and its output as the forward returned it. The module's forward pre-hooks run for
    what they set on the module (a hook-based weight norm computes its weight), their returned
    arguments dropped (the recorded ones are already theirs); its forward hooks and backward
    hooks do not run (the output gradient the meter kept has been through them)."""
    wrapped = {f"module.{name}": value for name, value in state.items()}
    return functional_call(_ForwardOnly(module), wrapped, args, kwargs)


def refuse_inside_backward(module: nn.Module, path: str) -> None:
    if torch._C._current_graph_task_id() != -1:
        raise ValueError(
            f"{path} ({type(module).__name__}) ran its forward during the backward pass: "
            "activation checkpointing (torch.utils.checkpoint) recomputes checkpointed layers "
            "there, and the recomputed call cannot be paired with the gradient of the original "
            "one; measure without checkpointing (turn it off on measured batches)")


def check_batch_dimension(module: nn.Module, path: str, output: Tensor,
                          batch_size: int | None) -> None:
    """Raise if ``output`` does not have the batch where the module's kind puts it."""
    if batch_size is None:
        return
    dim = 1 if isinstance(module, nn.MultiheadAttention) and not module.batch_first else 0
    if output.dim() <= dim or output.shape[dim] != batch_size:
        raise batch_not_in_output(path, module, output, dim, batch_size)


def batch_not_in_output(path: str, module: nn.Module, output: Tensor, dim: int,
                        batch_size: int) -> ValueError:
    return ValueError(
        f"{path} ({type(module).__name__}): its output has shape {list(output.shape)}, whose "
        f"{('first', 'second')[dim]} dimension is not the batch ({batch_size} samples), so its "
        "parameters' gradient mixes the samples and per-sample norms cannot be taken from it; "
        "call it on the batch (with the samples first), or freeze its parameters "
        "(requires_grad_(False))")


def called_twice(path: str, module: nn.Module) -> ValueError:
    return ValueError(
        f"{path} ({type(module).__name__}) was called again before backward reached its "
        "previous call: a module called more than once in one forward pass (a shared layer, a "
        "loop over time steps) is not supported; give each use its own module (tied weights "
        "may be shared by several modules), and for micro-batches run backward after each "
        "forward")


def rule_failed(path: str, module: nn.Module, error: Exception) -> ValueError:
    return ValueError(f"{path} ({type(module).__name__}): taking its per-sample gradients failed "
                      f"({type(error).__name__}: {error}); freeze its parameters "
                      "(requires_grad_(False)) or measure without this module")


def not_a_tensor(path: str, module: nn.Module, result: object) -> ValueError:
    return ValueError(f"{path} ({type(module).__name__}) returns {type(result).__name__}; "
                      "per-sample norms need modules with parameters to return a tensor (or a "
                      "tuple whose first element is the only one that needs a gradient)")
