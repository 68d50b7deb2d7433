"""The table of per-layer rules: layer class -> (capture, rule), and ``register_rule``."""

from __future__ import annotations

from collections.abc import Callable, Collection

from torch import Tensor, nn

from divebatch.meter.calls import UnsupportedCall
from divebatch.meter.kernels import own_parameters

__all__ = ["Capture", "RULES", "Rule", "UnsupportedCall", "has_rule", "register_rule"]


def _layer_input(layer: nn.Module, args: tuple, kwargs: dict, output: Tensor) -> Tensor:
    return args[0]


# A capture runs in the forward hook with the call's arguments (bound to the forward's
# signature: positional where they can be) and returns what the rule will need (by default the
# layer input); it raises UnsupportedCall for a call it cannot measure. A rule maps (layer,
# what its capture kept, gradient of the loss w.r.t. the layer output) to the squared norm,
# per sample, of the gradient w.r.t. the layer's trainable direct parameters: (N,).
Capture = Callable[[nn.Module, tuple, dict, Tensor], object]
Rule = Callable[[nn.Module, object, Tensor], Tensor]
RULES: dict[type[nn.Module], tuple[Capture, Rule]] = {}
RULE_PARAMS: dict[type[nn.Module], frozenset[str]] = {}  # the parameters a rule reads, if known


def register_rule(*layer_types: type[nn.Module], capture: Capture = _layer_input,
                  params: Collection[str] | None = None) -> Callable[[Rule], Rule]:
    """Register ``rule`` for exactly these layer classes (subclasses take the torch.func path).
    ``params``: the names of the parameters it reads; a layer holding any other (see
    ``has_rule``) takes the torch.func path. None: whatever the layer holds."""
    def register(rule: Rule) -> Rule:
        for layer_type in layer_types:
            RULES[layer_type] = (capture, rule)
            if params is not None:
                RULE_PARAMS[layer_type] = frozenset(params)
        return rule
    return register


def has_rule(layer: nn.Module) -> bool:
    """Whether ``layer`` takes its class's rule: one is registered for exactly its class, and
    the layer holds no parameter the rule does not read. ``torch.nn.utils.weight_norm`` and
    ``spectral_norm`` (the hook-based ones) replace a Linear's ``weight`` by ``weight_g`` and
    ``weight_v`` (or ``weight_orig``), from which a pre-hook computes it: such a layer is
    re-run through torch.func, which differentiates that computation too. So is a layer with
    a ParameterList or ParameterDict of its own (``own_parameters``)."""
    if type(layer) not in RULES:
        return False
    names = RULE_PARAMS.get(type(layer))
    return names is None or {name for name, _ in own_parameters(layer)} <= names
