"""The hooks behind per-sample norms: which layers to watch, and what they keep
(``SqNormHooks``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from divebatch.meter.checked_calls import check_explained
from divebatch.meter.calls import (bind, called_twice, check_batch_dimension, main_output,
                                   not_a_tensor, refuse_inside_backward, rule_failed)
from divebatch.meter.broadcast import shared_call, verify_unchanged
from divebatch.meter.functional import (CallStart, RandomState, RecordedCall, RecordedOutput,
                                        autocast_state, recorded_sq_norms)
from divebatch.meter.output_hooks import OutputHooks
from divebatch.meter.owners import Layers
from divebatch.meter.kernels import accumulation_dtype
from divebatch.meter.rules import RULES, UnsupportedCall, conv
from divebatch.meter.sample_weights import SampleWeights
from divebatch.meter.shared_params import Use, shared_sq_norms
from divebatch.meter.tap import unfreeze
from divebatch.meter.timing import measuring_share, timed_output_grad

# Layer type -> (whether a call on this input should fuse, the fused rule): see SqNormHooks.
FUSED_RULES = {nn.Conv2d: (conv.fuses_weight_grad, conv.conv2d_fused_sq_norms)}


class SqNormHooks:
    """Hooks that add up every sample's squared gradient norm, layer by layer.

    A forward hook on each module with trainable direct parameters keeps its inputs and puts a
    hook on its output; that hook runs the layer's rule when backward reaches the output. The
    forward hook runs before the module's other forward hooks (it sees the output as the
    forward returned it, the arguments as the forward got them), and the rule gets the output
    gradient after every hook the model puts on that output (test_module_hooks).
    Several forward passes (micro-batches), each followed by its own backward, are allowed:
    ``sq_norms`` lists their samples in order. Use as a context manager, or call ``remove()``.

    A hook on ``model`` itself records the batch size and inputs of each call: a layer whose
    output does not have the batch as its first dimension is refused, except a call that every
    sample shares (a position embedding on positions, a relative-position bias table), whose
    output is expanded over the batch (``divebatch.meter.broadcast``) so that each sample's
    share of its gradient arrives separately. A parameter held by several modules (tied
    weights) is measured by ``divebatch.meter.shared_params``. A module without a rule is
    re-run (``divebatch.meter.functional``) from the random state its call started from.

    ``fuse``: layers with a fused rule (``FUSED_RULES``) whose call it suits have their weight
    frozen during that forward call; their rule then writes the weight's batch gradient into
    ``weight.grad`` itself (see ``divebatch.meter.rules.conv``); never a layer with tied weights
    or one without its class's rule (``Layers.ruled``).

    ``check``: every call also keeps its arguments, and ``check_batch_gradient`` compares the
    batch gradient these calls explain with autograd's (``divebatch.meter.grad_check``), and the
    gradient they explain with random weights per sample with autograd's of the equally
    weighted loss (``divebatch.meter.sample_weights``); a model call in which an output was
    expanded is run again without the expansion, and must give the same outputs.
    """

    seconds = 0.0  # in the rules: divebatch.meter.timing

    def __init__(self, model: nn.Module, layers: Layers, fuse: bool = False,
                 check: bool = False, mixing_allowed: bool = False) -> None:
        self._frozen: list[nn.Module] = []  # weights frozen for the forward call now running
        self._layers = layers
        self.checks = check  # whether these hooks check the batch gradient
        # mixing_allowed: BatchNorm's batch statistics, allowed as an approximation
        self.weighing = SampleWeights(list(layers.owners)) if check and not mixing_allowed \
            else None
        self._paths, self._params, self._shared = layers.paths, layers.params, layers.shared
        self._direct = layers.direct
        self._direct_outputs = OutputHooks(self._on_direct_grad, self._direct)
        self._checked_outputs = OutputHooks(partial(timed_output_grad, self))
        self.start_batch()
        self._handles = [model.register_forward_pre_hook(self._on_model_call, with_kwargs=True)]
        direct = set() if check else self._direct
        # first among the layer's forward hooks: the output as its forward returned it
        self._handles += [layer.register_forward_hook(
            self._on_direct_forward if layer in direct else self._on_forward, with_kwargs=True,
            prepend=True) for layer in self._paths]
        fused = [m for m in layers.ruled if type(m) in FUSED_RULES and m not in self._shared]
        self._handles += [m.register_forward_pre_hook(self._before_forward, with_kwargs=True)
                          for m in (fused if fuse else ())]
        self._handles += [layer.register_forward_pre_hook(self._before_rule_less_call, prepend=True)
                          for layer in self._paths if layer not in layers.ruled]
        if check:
            self._handles.append(model.register_forward_hook(self._after_model_call,
                                                             with_kwargs=True))

    def start_batch(self) -> None:
        """Forget the previous batch and listen again: hooks left on the model between
        measured batches (``pause``) serve the next one without being placed anew."""
        self._pass_norms: list[Tensor | None] = []  # per forward pass: (n_pass,) once measured
        self._shared_uses: dict[int, list[Use]] = {}  # per forward pass, until sq_norms
        self._in_this_pass: set[nn.Module] = set()
        self._called: set[nn.Module] = set()  # in any pass
        self._ran_without_grad: set[nn.Module] = set()  # inside a model call that had grad
        self._model_grad = False  # whether the model call now running has grad enabled
        self._autocast = False  # whether it runs under autocast (the rules turn it off)
        # module -> (pass, what the capture kept, whether its weight gradient is fused, the call
        # as (args, kwargs) when checking)
        self._waiting: dict[nn.Module, tuple[int, object, bool, tuple | None]] = {}
        # checked calls with their output gradients, re-run once backward is done
        self._checked_calls: list[tuple[nn.Module, tuple, Tensor]] = []
        self._batch_size: int | None = None  # of the model call now running
        self._input_shape: tuple[int, ...] = ()
        self._sample_weights: Tensor | None = None  # c_i of the model call now running
        self._model_random: RandomState | None = None  # before the model call (check only)
        self._call_starts: dict[nn.Module, CallStart] = {}  # calls of rule-less modules
        self.expanded: list[str] = []  # modules whose output was expanded over the batch
        self.repeated: list[str] = []  # checked calls whose output got a second backward
        self.seconds = 0.0
        # inside a re-run of a module, or paused between batches: the hooks stay quiet
        self._replaying = False

    def pause(self) -> None:
        """Stay on the model, ignoring its calls, until ``start_batch``."""
        self._replaying = True
        self._waiting.clear()
        self._direct_outputs.clear()

    def __enter__(self) -> SqNormHooks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._waiting.clear()
        self._direct_outputs.clear()
        while self._frozen:  # a forward that failed before its forward hook ran
            self._frozen.pop().weight.requires_grad_(True)

    @property
    def sq_norms(self) -> Tensor | None:
        """(samples of all measured passes,) ||g_i||^2, or None before any backward."""
        self._add_shared_norms()
        measured = [norms for norms in self._pass_norms if norms is not None]
        if len(measured) <= 1:
            return measured[0] if measured else None
        return torch.cat(measured)

    def _on_model_call(self, model: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._replaying:
            return
        self._model_grad = torch.is_grad_enabled()
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, Tensor)]
        first = tensors[0] if tensors and tensors[0].dim() > 0 else None
        self._batch_size = None if first is None else first.shape[0]
        self._input_shape = () if first is None else tuple(first.shape)
        self._autocast = first is not None and torch.is_autocast_enabled(first.device.type)
        if self.checks and first is not None:
            self._model_random = RandomState.now(first.device)
            if self.weighing is not None:
                self._sample_weights = self.weighing.draw(first.shape[0])

    def _after_model_call(self, model: nn.Module, args: tuple, kwargs: dict,
                          output: object) -> None:
        if self._replaying or self._model_random is None:
            return
        if self.expanded:
            with self._quiet():
                verify_unchanged(model, args, kwargs, output, self._model_random, self.expanded)
        if self.weighing is not None:
            self.weighing.watch(output, self._sample_weights)

    def _before_rule_less_call(self, module: nn.Module, args: tuple) -> None:
        if not self._replaying and torch.is_grad_enabled():
            device = next(iter(self._params[module].values())).device
            self._call_starts[module] = CallStart.now(module, device)

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        """The hooks ignore the module calls the meter itself makes (re-runs, checks)."""
        quiet, self._replaying = self._replaying, True
        try:
            yield
        finally:
            self._replaying = quiet

    def _before_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._replaying or not torch.is_grad_enabled():
            return
        args, _ = bind(module, args, kwargs)
        if args and FUSED_RULES[type(module)][0](module, args[0]):
            module.weight.requires_grad_(False)
            self._frozen.append(module)

    def _on_direct_forward(self, module: nn.Module, args: tuple, kwargs: dict,
                           output: object) -> Tensor | None:
        """The forward hook of a layer that may take the direct path (unchecked batches): the
        common call goes straight there, any other to ``_on_forward``."""
        if (kwargs or self._frozen or self._replaying or type(output) is not Tensor
                or not output.requires_grad or output.shape[:1] != (self._batch_size,)
                or not torch.is_grad_enabled()):
            return self._on_forward(module, args, kwargs, output)
        self._on_direct_call(module, args, kwargs, output, False)
        return None

    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict,
                    output: object) -> Tensor | None:
        fused = bool(self._frozen) and module in self._frozen
        if fused:
            self._frozen.remove(module)
            unfreeze(module, output)
        if self._replaying:
            return None
        if not torch.is_grad_enabled():
            if self._model_grad:
                self._ran_without_grad.add(module)
            return None
        if (module in self._direct and not kwargs and not self.checks and type(output) is Tensor
                and output.requires_grad and output.shape[:1] == (self._batch_size,)):
            self._on_direct_call(module, args, kwargs, output, fused)
            return None
        return self._on_any_call(module, args, kwargs, output, fused)

    def _on_direct_call(self, module: nn.Module, args: tuple, kwargs: dict, output: Tensor,
                        fused: bool) -> None:
        """The common call, on an unchecked batch: a layer with a rule and no shared
        parameter, called on the batch without keywords, returning one tensor with the batch
        first. What ``_on_any_call`` would do, without the cases that cannot arise."""
        path = self._paths[module]
        refuse_inside_backward(module, path)
        try:
            saved = RULES[type(module)][0](module, args, kwargs, output)
        except UnsupportedCall as error:
            raise ValueError(f"{path} ({type(module).__name__}): {error}") from None
        self._start_call(module, path)
        self._waiting[module] = (len(self._pass_norms) - 1, saved, fused, None)
        # a stale hook (an earlier batch's, under keep_hooks) finds nothing waiting
        self._direct_outputs.hook(module, output)

    def _on_direct_grad(self, module: nn.Module, grad_out: Tensor) -> None:
        """A direct call's output gradient, after the model's hooks on it: the rule, timed."""
        waiting = self._waiting.pop(module, None)
        if waiting is None:
            return  # a stale output of an earlier pass
        started = time.perf_counter()
        pass_index, saved, fused, _ = waiting
        self._add_norms(pass_index, self._run_rule(module, saved, fused, grad_out))
        self.seconds += (time.perf_counter() - started) * (
            measuring_share(module, saved, grad_out) if fused else 1.0)

    def _on_any_call(self, module: nn.Module, args: tuple, kwargs: dict, output: object,
                     fused: bool) -> Tensor | None:
        path = self._paths[module]
        refuse_inside_backward(module, path)
        args, kwargs = bind(module, args, kwargs)
        result = main_output(module, output)
        if not isinstance(result, Tensor):
            raise not_a_tensor(path, module, result)
        expanded = None
        if result.shape[:1] != (self._batch_size,) or isinstance(module, nn.Embedding):
            shared = shared_call(module, args, kwargs, result, self._batch_size,
                                 self._input_shape)
            if shared is not None:
                args, kwargs, expanded = shared
                result = expanded
                self.expanded.append(f"{path} ({type(module).__name__})")
        start = self._call_start(module, result)
        saved = self._capture(module, path, args, kwargs, result, start) \
            if result.requires_grad else None
        check_batch_dimension(module, path, result, self._batch_size)
        self._start_call(module, path)
        if result.requires_grad:
            call = (args, kwargs, self._sample_weights, start, autocast_state(result.device)) \
                if self.checks else None
            self._waiting[module] = (len(self._pass_norms) - 1, saved, fused, call)
            self._checked_outputs.hook(module, result)
        if expanded is not None and isinstance(output, tuple):
            return (expanded, *output[1:])
        return expanded

    def _start_call(self, module: nn.Module, path: str) -> None:
        if module in self._waiting and self._waiting[module][0] == len(self._pass_norms) - 1:
            raise called_twice(path, module)
        if module in self._in_this_pass or not self._pass_norms:
            self._start_pass()
        self._in_this_pass.add(module)
        self._called.add(module)

    def _call_start(self, module: nn.Module, output: Tensor) -> CallStart | None:
        """Where this call of a rule-less module started (its random state only if it drew)."""
        start = self._call_starts.pop(module, None)
        if start is None or start.random.differs(RandomState.now(output.device)):
            return start
        return start._replace(random=None)

    def _capture(self, module: nn.Module, path: str, args: tuple, kwargs: dict,
                 output: Tensor, start: CallStart | None) -> object:
        if module not in self._layers.ruled:  # re-run by divebatch.meter.functional
            saved = RecordedCall(args, kwargs, RecordedOutput.of(output), start,
                                 autocast_state(output.device))
        else:
            try:
                saved = RULES[type(module)][0](module, args, kwargs, output)
            except UnsupportedCall as error:
                raise ValueError(f"{path} ({type(module).__name__}): {error}") from None
        return (args, kwargs) if module in self._shared else saved

    def _start_pass(self) -> None:
        self._pass_norms.append(None)
        self._in_this_pass = set()
        self._waiting.clear()  # outputs of the previous pass that backward never reached
        self._direct_outputs.clear()

    def fused_input(self, module: nn.Module) -> Tensor | None:
        """The input kept by a fused call of ``module`` that backward has yet to reach."""
        waiting = self._waiting.get(module)
        return waiting[1] if waiting is not None and waiting[2] else None

    def on_output_grad(self, module: nn.Module, grad_out: Tensor) -> None:
        """The hook on a layer's output: its rule's norms, or what a later check needs."""
        if self.weighing is not None and self.weighing.running:
            return  # the weighted check's backward
        waiting = self._waiting.pop(module, None)
        if waiting is None:  # a stale output of an earlier pass, or another backward over it
            if any(called is module for called, *_ in self._checked_calls):
                self.repeated.append(f"{self._paths[module]} ({type(module).__name__})")
            return
        pass_index, saved, fused, call = waiting
        if call is not None:
            self._checked_calls.append((module, call, grad_out.detach()))
        if module in self._shared:
            use = Use(module, self._params[module], *saved, grad_out.detach())
            self._shared_uses.setdefault(pass_index, []).append(use)
            return
        self._add_norms(pass_index, self._run_rule(module, saved, fused, grad_out))

    def _run_rule(self, module: nn.Module, saved: object, fused: bool,
                  grad_out: Tensor) -> Tensor:
        """The layer's (N,) squared norms; a failure names the layer."""
        self._replaying = True  # rules may re-run the module (torch.func)
        try:  # grad and autocast off only where on (each costs ~10 us): rules sum in float32
            if torch.is_grad_enabled() or self._autocast:
                with torch.no_grad(), torch.autocast(grad_out.device.type, enabled=False):
                    return self._rule_sq_norms(module, saved, fused, grad_out)
            return self._rule_sq_norms(module, saved, fused, grad_out)
        except UnsupportedCall as error:
            raise ValueError(f"{self._paths[module]} ({type(module).__name__}): {error}") from None
        except Exception as error:  # noqa: BLE001  (a refusal by name, never another error)
            raise rule_failed(self._paths[module], module, error) from error
        finally:
            self._replaying = False

    @staticmethod
    def _rule_sq_norms(module: nn.Module, saved: object, fused: bool, grad_out: Tensor) -> Tensor:
        if grad_out.shape[0] == 0:  # no samples (a process's empty share of a DDP batch)
            return grad_out.new_zeros(0, dtype=accumulation_dtype(grad_out))
        if fused:
            return FUSED_RULES[type(module)][1](module, saved, grad_out)
        if not isinstance(saved, RecordedCall):
            return RULES[type(module)][1](module, saved, grad_out)
        return recorded_sq_norms(module, saved, grad_out)

    def _add_norms(self, pass_index: int, norms: Tensor) -> None:
        previous = self._pass_norms[pass_index]
        if previous is None:
            self._pass_norms[pass_index] = norms
        elif previous.dtype == norms.dtype or \
                previous.dtype == torch.promote_types(previous.dtype, norms.dtype):
            previous.add_(norms)  # rules return fresh tensors: no allocation per layer
        else:
            self._pass_norms[pass_index] = previous + norms

    def _add_shared_norms(self) -> None:
        if not self._shared_uses:
            return
        try:
            with self._quiet(), torch.no_grad():
                for pass_index, uses in self._shared_uses.items():
                    self._add_norms(pass_index, shared_sq_norms(uses))
        except UnsupportedCall as error:
            paths = " and ".join(dict.fromkeys(
                f"{self._paths[use.module]} ({type(use.module).__name__})" for uses in
                self._shared_uses.values() for use in uses))
            raise ValueError(f"{paths}: {error}") from None
        self._shared_uses.clear()

    def check_grads_seen(self, params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
        """Raise if a parameter got a gradient although no module holding it ran."""
        self._layers.check_grads_seen(self._called, self._ran_without_grad, params, grads)

    def check_batch_gradient(self, params: Sequence[Tensor],
                             grads: Sequence[Tensor | None]) -> None:
        """Raise if the calls the hooks saw do not explain a parameter's batch gradient (needs
        ``check=True``): then some of its gradient comes from elsewhere, which the per-sample
        norms would miss."""
        with self._quiet():
            check_explained(self._checked_calls, self._layers, params, grads, self.weighing,
                            self.repeated)
        self._checked_calls.clear()
