"""The hooks behind per-sample norms: which layers to watch, and what they keep.

A forward hook on each module with trainable direct parameters keeps what its rule needs and
hooks the module's output; when backward reaches that output, the layer's rule
(``divebatch.sq_norm_rules``, ``divebatch.conv_sq_norms``) turns it into (N,) squared norms.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from . import conv_sq_norms
from .sq_norm_rules import (RULES, _accumulation_dtype, _trainable_direct_params,
                            _uses_batch_statistics, functional_sq_norms)

# Layer type -> (whether a call on this input should fuse, the fused rule): see SqNormHooks.
FUSED_RULES = {nn.Conv2d: (conv_sq_norms.fuses_weight_grad, conv_sq_norms.conv2d_fused_sq_norms)}


class SqNormHooks:
    """Hooks that add up every sample's squared gradient norm, layer by layer.

    A forward hook on each module with trainable direct parameters keeps its inputs and puts a
    hook on its output; that hook runs the layer's rule when backward reaches the output.
    Several forward passes (micro-batches), each followed by its own backward, are allowed:
    ``sq_norms`` lists their samples in order. Use as a context manager, or call ``remove()``.

    ``fuse``: layers with a fused rule (``FUSED_RULES``) whose call it suits have their weight
    frozen during that forward call; their rule then writes the weight's batch gradient into
    ``weight.grad`` itself (see ``divebatch.conv_sq_norms``).
    """

    def __init__(self, owners: dict[Tensor, tuple[str, nn.Module]], fuse: bool = False) -> None:
        self._pass_norms: list[Tensor | None] = []  # per forward pass: (n_pass,) once measured
        self._in_this_pass: set[nn.Module] = set()
        self._called: set[nn.Module] = set()  # in any pass
        # module -> (pass, what the capture kept, whether its weight gradient is fused)
        self._waiting: dict[nn.Module, tuple[int, object, bool]] = {}
        self._frozen: list[nn.Module] = []  # weights frozen for the forward call now running
        self._replaying = False  # inside a torch.func re-run of a module: hooks stay quiet
        self._owners = owners
        layers = dict.fromkeys(module for _, module in owners.values())  # in model order
        self._handles = [layer.register_forward_hook(self._on_forward, with_kwargs=True)
                         for layer in layers]
        if fuse:
            self._handles += [layer.register_forward_pre_hook(self._before_forward)
                              for layer in layers if type(layer) in FUSED_RULES]

    def __enter__(self) -> SqNormHooks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._waiting.clear()
        while self._frozen:  # a forward that failed before its forward hook ran
            self._frozen.pop().weight.requires_grad_(True)

    @property
    def sq_norms(self) -> Tensor | None:
        """(samples of all measured passes,) ||g_i||^2, or None before any backward."""
        measured = [norms for norms in self._pass_norms if norms is not None]
        if len(measured) <= 1:
            return measured[0] if measured else None
        return torch.cat(measured)

    def _before_forward(self, module: nn.Module, args: tuple) -> None:
        if self._replaying or not torch.is_grad_enabled() or not args:
            return
        if FUSED_RULES[type(module)][0](module, args[0]):
            module.weight.requires_grad_(False)
            self._frozen.append(module)

    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        fused = module in self._frozen
        if fused:
            self._frozen.remove(module)
            module.weight.requires_grad_(True)
        if self._replaying or not torch.is_grad_enabled():
            return
        if not isinstance(output, Tensor):
            raise ValueError(f"{type(module).__name__} returns {type(output).__name__}; "
                             "per-sample norms need modules with parameters to return a tensor")
        if module in self._waiting and self._waiting[module][0] == len(self._pass_norms) - 1:
            raise ValueError(
                f"{type(module).__name__} was called again before backward reached its previous "
                "call: per-sample norms of a layer shared within one forward pass are not "
                "supported (for micro-batches, run backward after each forward)")
        if module in self._in_this_pass or not self._pass_norms:
            self._start_pass()
        self._in_this_pass.add(module)
        self._called.add(module)
        if output.requires_grad:
            capture, _ = RULES.get(type(module), (None, None))
            saved = (args, kwargs) if capture is None else capture(module, args, output)
            self._waiting[module] = (len(self._pass_norms) - 1, saved, fused)
            self._handles.append(output.register_hook(partial(self._on_output_grad, module)))

    def _start_pass(self) -> None:
        self._pass_norms.append(None)
        self._in_this_pass = set()
        self._waiting.clear()  # outputs of the previous pass that backward never reached

    def _on_output_grad(self, module: nn.Module, grad_out: Tensor) -> None:
        if module not in self._waiting:
            return  # a stale output of an earlier pass
        pass_index, saved, fused = self._waiting.pop(module)
        with torch.no_grad():
            if grad_out.shape[0] == 0:  # no samples (a process's empty share of a DDP batch)
                norms = grad_out.new_zeros(0, dtype=_accumulation_dtype(grad_out))
            elif fused:
                norms = FUSED_RULES[type(module)][1](module, saved, grad_out)
            elif type(module) in RULES:
                norms = RULES[type(module)][1](module, saved, grad_out)
            else:
                self._replaying = True
                try:
                    norms = functional_sq_norms(module, *saved, grad_out)
                finally:
                    self._replaying = False
        previous = self._pass_norms[pass_index]
        self._pass_norms[pass_index] = norms if previous is None else previous + norms

    def check_grads_seen(self, params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
        """Raise if a parameter got a gradient although its module's forward never ran."""
        for param, param_grad in zip(params, grads):
            name, module = self._owners[param]
            if module not in self._called and param_grad is not None and bool(param_grad.any()):
                raise ValueError(
                    f"parameter {name} received a gradient but {type(module).__name__}.forward "
                    "never ran; parameters used outside their module's forward (such as "
                    "nn.MultiheadAttention.out_proj) are not supported")


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name or type(model).__name__, m) for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def check_batchnorm(batchnorms: list[tuple[str, nn.Module]], allow_batchnorm: bool) -> bool:
    """True if some BatchNorm uses batch statistics (allowed); ValueError if not allowed."""
    offenders = [name for name, m in batchnorms if _uses_batch_statistics(m)]
    if offenders and not allow_batchnorm:
        raise ValueError(
            f"BatchNorm in training mode ({', '.join(offenders)}): samples interact through the "
            "batch statistics, so per-sample gradients are not defined. Use GroupNorm, call "
            "model.eval(), or pass allow_batchnorm=True for an approximation that holds the "
            "batch statistics fixed")
    return bool(offenders)


def parameter_owners(model: nn.Module) -> dict[Tensor, tuple[str, nn.Module]]:
    """Each trainable parameter -> (its name, the module that holds it directly)."""
    owners: dict[Tensor, tuple[str, nn.Module]] = {}
    for module_name, module in model.named_modules():
        for param_name, param in _trainable_direct_params(module):
            name = f"{module_name}.{param_name}".lstrip(".")
            if param in owners:
                raise ValueError(f"parameter {name} is also registered as {owners[param][0]}; "
                                 "per-sample norms of shared parameters are not supported")
            owners[param] = (name, module)
    return owners
