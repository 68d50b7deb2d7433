"""Measured batches of a plain ``nn.Sequential`` of ``nn.Linear`` layers, without layer hooks.

On a small model a forward hook per layer and a hook on each layer's output cost more than the
rules' arithmetic: the digits MLP's measured step took 1.3-1.4x a plain one with the hooks of
``divebatch.meter.hooks`` and 1.2x with its layers run one by one and no forward hook
(``benchmarks/hook_floor.py``). So when the model qualifies (``plain_linears``), its measured
batches after the first run the Sequential's children themselves (``SequentialForward``): the
model's ``forward`` is replaced, for the batch only, by the same loop over its children that
also keeps each trainable Linear's input and hooks its output, a hook that runs the Linear
rule when backward reaches it.

A model qualifies when it is an ``nn.Sequential`` with Sequential's own forward, every module
holding a trainable parameter is a direct child of type ``nn.Linear`` (not a subclass: it could
compute otherwise), no parameter is shared, and the model holds no BatchNorm; and, checked every
batch, no hook sits on those Linear layers, no global module hook exists, and the model's
forward is neither replaced nor compiled. Everything else takes the layer hooks' path, and so
does the first measured batch, which checks the split into samples.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_globals
from torch.nn.modules.batchnorm import _BatchNorm

from divebatch.meter.calls import batch_not_in_output, called_twice
from divebatch.meter.output_hooks import OutputHooks
from divebatch.meter.owners import Layers
from divebatch.meter.rules.linear import linear_sq_norms

LAYER_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks")


def plain_linears(model: nn.Module, layers: Layers) -> list[nn.Linear] | None:
    """The Linear children a ``SequentialForward`` measures, or None if the model does not
    qualify (the conditions that cannot change while the meter's layout holds)."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        return None
    if layers.shared or any(isinstance(m, _BatchNorm) for m in model.modules()):
        return None
    children = list(model._modules.values())
    linears = [m for m in children if type(m) is nn.Linear and m in layers.params]
    return linears if len(linears) == len(layers.params) else None


def runs_plainly(model: nn.Module, linears: Sequence[nn.Linear]) -> bool:
    """Whether nothing added since the layout changes what the children compute: hooks on the
    Linear layers or global ones, a replaced or compiled forward."""
    if "forward" in model.__dict__ or getattr(model, "_compiled_call_impl", None) is not None:
        return False
    return not any(getattr(owner, name) for owner in (module_globals, *linears)
                   for name in (GLOBAL_HOOKS if owner is module_globals else LAYER_HOOKS))


class SequentialForward:
    """What ``DiversityMeter`` puts on a qualifying Sequential for its measured batches: the
    interface of ``SqNormHooks`` that ``DiversityMeter.track`` uses. Each layer's output gradient
    is the first backward's after the model's own hooks on that output, as in the hooks' path
    (``divebatch.meter.output_hooks``)."""

    checks = False  # never the checked batch
    expanded: tuple[str, ...] = ()  # no output is expanded over the batch

    def __init__(self, model: nn.Sequential, linears: Sequence[nn.Linear], layers: Layers) -> None:
        self._model, self._layers = model, layers
        self._measured = set(linears)
        self._children = list(model._modules.values())
        self._outputs = OutputHooks(self._on_grad, linears)
        self.start_batch()

    def start_batch(self) -> None:
        self._pass_norms: list[Tensor | None] = []  # per model call, once backward reached it
        self._waiting: dict[nn.Module, tuple[int, Tensor]] = {}  # layer -> (call, its input)
        self._called: set[nn.Module] = set()
        self.seconds = 0.0
        object.__setattr__(self._model, "forward", self._forward)

    def pause(self) -> None:
        self.remove()

    def remove(self) -> None:
        self._model.__dict__.pop("forward", None)
        self._waiting = {}
        self._outputs.clear()

    def _forward(self, hidden: Tensor) -> Tensor:
        if not torch.is_grad_enabled():
            return nn.Sequential.forward(self._model, hidden)
        if self._waiting:  # the last call's outputs that backward has not reached
            layer = next(iter(self._waiting))
            raise called_twice(self._layers.paths[layer], layer)
        call, measured = len(self._pass_norms), self._measured
        self._pass_norms.append(None)
        batch_size = hidden.shape[0] if hidden.dim() else None
        for child in self._children:
            output = child(hidden)
            if child in measured and output.requires_grad:
                if output.dim() == 0 or output.shape[0] != batch_size:
                    raise batch_not_in_output(self._layers.paths[child], child, output, 0,
                                              batch_size)
                self._waiting[child] = (call, hidden.detach())
                self._called.add(child)
                self._outputs.hook(child, output)
            hidden = output
        return hidden

    def _on_grad(self, layer: nn.Linear, grad_out: Tensor) -> None:
        waiting = self._waiting.pop(layer, None)
        if waiting is None:  # another backward over the same output: the first counts
            return
        started = time.perf_counter()
        call, inputs = waiting
        # grad and autocast off only where on (create_graph, a backward inside autocast)
        if torch.is_grad_enabled() or torch._C._is_any_autocast_enabled():
            with torch.no_grad(), torch.autocast(inputs.device.type, enabled=False):
                norms = linear_sq_norms(layer, inputs, grad_out)
        else:
            norms = linear_sq_norms(layer, inputs, grad_out)
        total = self._pass_norms[call]
        self._pass_norms[call] = norms if total is None else total.add_(norms)
        self.seconds += time.perf_counter() - started

    @property
    def sq_norms(self) -> Tensor | None:
        """(samples of all calls that backward reached,) ||g_i||^2, or None before any."""
        measured = [norms for norms in self._pass_norms if norms is not None]
        if len(measured) <= 1:
            return measured[0] if measured else None
        return torch.cat(measured)

    def check_grads_seen(self, params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
        self._layers.check_grads_seen(self._called, set(), params, grads)
