"""Which modules hold the model's trainable parameters, and the layers the meter refuses up front.

A parameter can be held by several modules: tied weights (``lm_head.weight = wte.weight``,
measured by ``divebatch.meter.shared_params``), or a module and one of its submodules
(RoBERTa's LM head: ``lm_head.bias`` is ``lm_head.decoder.bias``). In the second case the
submodule's calls, which run inside the module's own, account for the parameter: the enclosing
module is not counted as a holder. If it also uses the parameter directly, the batch gradient
check (``divebatch.meter.grad_check``) finds that part unexplained and refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from divebatch.meter.kernels import PARAMETER_CONTAINERS, trainable_direct_params
from divebatch.meter.rules import has_rule
from divebatch.meter.rules.normalisation import uses_batch_statistics

# Layers whose every call needs a closer look: an Embedding may be a position embedding that
# every sample shares (expanded over the batch), attention may have the batch second.
INSPECTED_CALLS = (nn.Embedding, nn.MultiheadAttention)
# Layers whose rule covers the parameters of their children too (they use them functionally).
COMPOSITE_LAYERS = (nn.MultiheadAttention,)


class Owner(NamedTuple):
    """A module that holds a trainable parameter directly (or through a composite layer)."""
    path: str  # e.g. "transformer.h.0.attn.c_attn"
    module: nn.Module
    name: str  # the parameter's name inside that module

    @property
    def param_path(self) -> str:
        """The parameter's name in the model, as ``named_parameters`` gives it."""
        return f"{self.path}.{self.name}" if self.path else self.name


class Layers:
    """The modules the hooks watch, worked out once per model: each module holding trainable
    parameters, with its path and its parameters by name, which of them share a parameter (tied
    weights), and which may take the hooks' direct path."""

    def __init__(self, owners: dict[Tensor, list[Owner]]) -> None:
        self.owners = owners
        self.paths = {o.module: o.path or "model" for held in owners.values() for o in held}
        self.params: dict[nn.Module, dict[str, Tensor]] = {}
        for param, held in owners.items():
            for owner in held:
                self.params.setdefault(owner.module, {})[owner.name] = param
        self.shared = {o.module for held in owners.values() if len(held) > 1 for o in held}
        # layers whose unchecked calls may take the hooks' direct path: a rule of their own, no
        # shared parameter, nothing to inspect in the call
        self.ruled = {m for m in self.paths if has_rule(m)}  # the others: torch.func
        self.direct = {m for m in self.ruled if m not in self.shared
                       and not isinstance(m, INSPECTED_CALLS)}

    def check_grads_seen(self, called: set[nn.Module], ran_without_grad: set[nn.Module],
                         params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
        """Raise if a parameter got a gradient although no module holding it ran (``called``);
        ``ran_without_grad``: modules that ran with gradients disabled inside the model."""
        if len(called) == len(self.params):
            return  # every module holding a parameter ran
        for param, param_grad in zip(params, grads):
            held = self.owners[param]
            if any(o.module in called for o in held):
                continue
            if any(o.module in ran_without_grad for o in held):
                raise ValueError(
                    f"{held[0].path} ({type(held[0].module).__name__}) ran with gradients "
                    "disabled inside the model's forward (under torch.no_grad(), or in "
                    "reentrant activation checkpointing, torch.utils.checkpoint("
                    "use_reentrant=True)), so the per-sample gradients of "
                    f"{held[0].param_path} cannot be measured; freeze it "
                    "(requires_grad_(False)) if it is not meant to train, else measure "
                    "without checkpointing")
            if param_grad is not None and bool(param_grad.any()):
                raise ValueError(
                    f"parameter {held[0].param_path} received a gradient but "
                    f"{held[0].path} ({type(held[0].module).__name__}).forward never ran; "
                    "parameters used outside their module's forward are not supported")


def batchnorm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name or type(model).__name__, m) for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def check_batchnorm(batchnorms: list[tuple[str, nn.Module]], allow_batchnorm: bool) -> bool:
    """True if some BatchNorm uses batch statistics (allowed); ValueError if not allowed."""
    offenders = [name for name, m in batchnorms if uses_batch_statistics(m)]
    if offenders and not allow_batchnorm:
        without_stats = [name for name, m in batchnorms if m.running_mean is None]
        why = (f"BatchNorm without running statistics ({', '.join(without_stats)}; "
               "track_running_stats=False uses batch statistics even in eval mode)"
               if without_stats else f"BatchNorm in training mode ({', '.join(offenders)})")
        cure = ("track_running_stats=True and model.eval()" if without_stats
                else "model.eval()")
        raise ValueError(
            f"{why}: samples interact through the batch statistics, so per-sample gradients "
            f"are not defined. Use GroupNorm, {cure}, or pass allow_batchnorm=True for an "
            "approximation that holds the batch statistics fixed")
    return bool(offenders)


def parameter_owners(model: nn.Module) -> dict[Tensor, list[Owner]]:
    """Each trainable parameter -> the modules that hold it (several for tied weights).

    A composite layer (``COMPOSITE_LAYERS``) holds its children's parameters too, a
    parametrized one the originals of its weights, and a module those of its ParameterList and
    ParameterDict children (``own_parameters``). Recurrent layers (nn.RNN, nn.LSTM, nn.GRU)
    with trainable parameters are refused, and so are compiled modules (``refuse_compiled``).
    """
    owners: dict[Tensor, list[Owner]] = {}
    composites: list[str] = []
    for path, module in model.named_modules():
        refuse_compiled(path or "the model", module)
        if any(path.startswith(f"{prefix}.") for prefix in composites):
            continue
        if isinstance(module, PARAMETER_CONTAINERS):
            continue  # the module holding it uses its parameters (own_parameters)
        if isinstance(module, COMPOSITE_LAYERS) or parametrize.is_parametrized(module):
            composites.append(path)
        params = ([(name, p) for name, p in module.named_parameters() if p.requires_grad]
                  if isinstance(module, COMPOSITE_LAYERS) else trainable_direct_params(module))
        if params and isinstance(module, nn.RNNBase):
            raise ValueError(
                f"{path or type(model).__name__} ({type(module).__name__}): recurrent layers "
                "are not supported (their parameters are applied at every time step inside one "
                "call, which the per-layer rules cannot see); freeze them "
                "(requires_grad_(False)) or measure a model without them")
        for name, param in params:
            owners.setdefault(param, []).append(Owner(path, module, name))
    return {param: _innermost(held) for param, held in owners.items()}


class TrainableParams:
    """A model's parameters and which of them train, to notice a change: a layer frozen or
    unfrozen by a fine-tuning schedule (``changed``, cheap enough for every batch), or a
    parameter added or removed or given a gradient hook (``refresh``, which also takes the
    model's state as it is)."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._params: list[Tensor] = []
        self._flags: list[bool] = []
        self._hooked: list[bool] = []
        self.refresh()

    def changed(self) -> bool:
        return [p.requires_grad for p in self._params] != self._flags

    def refresh(self) -> bool:
        params = list(self._model.parameters())
        flags = [p.requires_grad for p in params]
        hooked = [bool(p._backward_hooks) for p in params]
        changed = (flags != self._flags or hooked != self._hooked
                   or len(params) != len(self._params)
                   or any(new is not old for new, old in zip(params, self._params)))
        self._params, self._flags, self._hooked = params, flags, hooked
        return changed


def refuse_compiled(path: str, module: nn.Module) -> None:
    """A module compiled by ``torch.compile`` runs traced code in which hooks added afterwards
    do not run: the meter would see none of its layers' calls."""
    wrapper = type(module).__name__ == "OptimizedModule" and hasattr(module, "_orig_mod")
    if wrapper or getattr(module, "_compiled_call_impl", None) is not None:
        raise ValueError(
            f"{path} ({type(module).__name__}) is compiled with torch.compile, and hooks "
            "added to a compiled module do not run, so the meter cannot see its layers' calls; "
            "measure it uncompiled on measured batches (a torch.compile wrapper's model is its "
            "_orig_mod)")
    if isinstance(module, torch.jit.ScriptModule):
        raise ValueError(
            f"{path} ({type(module).__name__}) is a TorchScript module "
            "(torch.jit.script or torch.jit.trace), which takes no Python hooks, so the meter "
            "cannot see its layers' calls; measure the model before scripting it")


def _innermost(held: list[Owner]) -> list[Owner]:
    """The holders of one parameter, less those that enclose another holder."""
    return [owner for owner in held
            if not any(other.path.startswith(f"{owner.path}.") or (not owner.path and other.path)
                       for other in held if other is not owner)]
