"""The table of per-layer rules: layer class -> (capture, rule), and ``register_rule``."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from divebatch.meter.calls import UnsupportedCall

__all__ = ["Capture", "RULES", "Rule", "UnsupportedCall", "register_rule"]


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


def register_rule(*layer_types: type[nn.Module],
                  capture: Capture = _layer_input) -> Callable[[Rule], Rule]:
    """Register ``rule`` for exactly these layer classes (subclasses take the torch.func path)."""
    def register(rule: Rule) -> Rule:
        for layer_type in layer_types:
            RULES[layer_type] = (capture, rule)
        return rule
    return register
