"""Module calls that every sample shares: their output is broadcast against the batch.

A position embedding called on positions (``wpe(arange(T)[None])``, output (1, T, d)), a
relative-position bias table (output (1, heads, T, T)) or a class token: one call serves every
sample, so the single backward pass sums the samples' shares of its gradient. The hooks
(``divebatch.meter.hooks``) replace such an output by a view expanded over the batch, (1, ...)
-> (N, ...): the same values wherever it is broadcast against the batch, and autograd then
delivers every sample's share separately. Only a leading dimension of size 1 is expanded, so the
tensor keeps its number of dimensions and broadcasts as before; one narrow case adds one:
``nn.Embedding`` on a 1-D index shaped like the positions of a (N, T) input (``wpe(arange(T))``,
nanoGPT), (T, d) -> (N, T, d).

A call with a tensor argument whose first dimension is the batch is never shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from divebatch.meter.functional import RandomState, replayed
from divebatch.meter.grad_check import relative_difference, tolerance


def _leading_one(value: object) -> bool:
    return isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == 1


def _batched(value: object, batch_size: int) -> bool:
    return isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch_size


def shared_call(module: nn.Module, args: tuple, kwargs: dict, output: Tensor,
                batch_size: int | None, input_shape: tuple[int, ...],
                ) -> tuple[tuple, dict, Tensor] | None:
    """(args, kwargs, output) of a shared call expanded over the batch, or None if the call is
    not a shared one (see the module docstring)."""
    if batch_size is None:
        return None
    if is_position_lookup(module, args, input_shape):
        index = args[0]
        return ((index.expand(batch_size, *index.shape), *args[1:]), kwargs,
                output.expand(batch_size, *output.shape))
    if batch_size == 1 or not _leading_one(output) or any(
            _batched(value, batch_size) for value in (*args, *kwargs.values())):
        return None

    def expand(value: object) -> object:
        return value.expand(batch_size, *value.shape[1:]) if _leading_one(value) else value
    return tuple(map(expand, args)), {k: expand(v) for k, v in kwargs.items()}, expand(output)


def is_position_lookup(module: nn.Module, args: tuple, input_shape: tuple[int, ...]) -> bool:
    """``nn.Embedding`` on a 1-D index shaped like the positions of the (N, T) model input."""
    return (isinstance(module, nn.Embedding) and len(input_shape) == 2 and bool(args)
            and isinstance(args[0], Tensor) and tuple(args[0].shape) == input_shape[1:])


def verify_unchanged(model: nn.Module, args: tuple, kwargs: dict, output: object,
                     random_state: RandomState, expanded: list[str]) -> None:
    """Raise unless ``model`` run again on the same call (the meter's hooks quiet, so nothing is
    expanded), from the same random state and with its buffers restored afterwards, gives
    ``output``: the expansions of ``expanded`` must not change what the model computes."""
    buffers = [(b, b.clone()) for b in model.buffers()]
    try:
        with replayed(random_state), torch.no_grad():
            reference = model(*args, **kwargs)
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                if not torch.equal(buffer, saved):  # running statistics; others untouched
                    buffer.copy_(saved)
    actual, expected = tree_flatten(output)[0], tree_flatten(reference)[0]
    if len(actual) == len(expected) and all(map(_same, actual, expected)):
        return
    raise ValueError(
        f"{', '.join(dict.fromkeys(expanded))}: its output has a first dimension of 1, so the "
        "meter expanded it over the batch to take each sample's share of its gradient, but "
        "then the model's outputs differ from those it gives without the expansion: the output "
        "is not broadcast against the batch, and per-sample norms cannot be taken from it; "
        "freeze its parameters (requires_grad_(False)) or broadcast its output against the "
        "batch")


def _same(actual: object, expected: object) -> bool:
    if not isinstance(actual, Tensor) or not isinstance(expected, Tensor):
        return type(actual) is type(expected)
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return False
    if not actual.is_floating_point():
        return torch.equal(actual, expected)
    return relative_difference(actual.detach(), expected) <= tolerance(expected)


@contextmanager
def expansions_named(expanded: list[str]) -> Iterator[None]:
    """A failure (other than a refusal) once outputs were expanded over the batch (their modules
    listed in ``expanded``, which the hooks fill as the model runs) is raised as a refusal
    naming those modules."""
    try:
        yield
    except Exception as error:
        if expanded and not isinstance(error, ValueError):
            raise failed_after_expansion(expanded, error) from error
        raise


def failed_after_expansion(expanded: list[str], error: Exception) -> ValueError:
    return ValueError(
        f"{', '.join(dict.fromkeys(expanded))}: its output has a first dimension of 1, so the "
        "meter expanded it over the batch to take each sample's share of its gradient, and the "
        f"model then failed ({type(error).__name__}: {error}): the output is not broadcast "
        "against the batch, and per-sample norms cannot be taken from it; freeze its "
        "parameters (requires_grad_(False)) or broadcast its output against the batch")
