"""Hooks on layer outputs that hand each output's gradient to the meter once it has been
through every hook the model put on that output (``OutputHooks``).

A model may change a layer's output gradient with hooks of its own: a tensor hook placed in its
forward or by a forward hook, a full backward pre-hook. Autograd runs the hooks on a tensor
before the hooks on the node that made it, so the meter listens on the node, or, on the direct
path, through the output's own hooks dict registered on the node: what ``Tensor.register_hook``
does, without the ``RemovableHandle`` it makes (half its cost, ~5 us a layer;
``benchmarks/output_hook_cost.py``). A hook the model adds to that output later joins the same
dict after the meter's; then the meter's hands over to a hook on the node, which sees its result.
The hooks' handles are not kept: they go with the graph.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import partial

from torch import Tensor, nn

# The meter's key in an output's hooks dict; RemovableHandle's keys are ints.
OUTPUT_HOOK_KEY = "divebatch.meter"


class OutputHooks:
    """``hook(module, output)``: ``on_grad(module, grad_out)`` once backward has the output's
    gradient; ``modules`` may take the hooks dict (the others always hook the node)."""

    def __init__(self, on_grad: Callable[[nn.Module, Tensor], None],
                 modules: Iterable[nn.Module] = ()) -> None:
        self._on_grad = on_grad
        self._tensor_hooks = {module: partial(self._on_tensor_hook, module) for module in modules}
        # module -> (its output's hooks dict, the output's node and index)
        self._hooked: dict[nn.Module, tuple[dict, object, int]] = {}

    def hook(self, module: nn.Module, output: Tensor) -> None:
        node = output.grad_fn
        if node is None:  # a leaf output
            output.register_hook(partial(self._on_grad, module))
        elif output._backward_hooks is None and module in self._tensor_hooks:
            hooks = OrderedDict({OUTPUT_HOOK_KEY: self._tensor_hooks[module]})  # a model's
            output._backward_hooks = hooks  # handle on the output keeps a weak reference to it
            node._register_hook_dict(output)
            self._hooked[module] = (hooks, node, output.output_nr)
        else:
            node.register_prehook(partial(self._on_node_grads, module, output.output_nr))

    def clear(self) -> None:
        """Forget outputs that backward has not reached (an earlier pass's)."""
        self._hooked.clear()

    def _on_tensor_hook(self, module: nn.Module, grad_out: Tensor) -> None:
        hooks, node, output_nr = self._hooked.pop(module, (None, None, 0))
        if hooks is not None and len(hooks) > 1:  # a model's hook on the output runs after this
            node.register_prehook(partial(self._on_node_grads, module, output_nr))
        else:
            self._on_grad(module, grad_out)

    def _on_node_grads(self, module: nn.Module, output_nr: int,
                       grad_outputs: tuple[Tensor | None, ...]) -> None:
        if grad_outputs[output_nr] is not None:
            self._on_grad(module, grad_outputs[output_nr])
