"""The guard against a per-sample split that only looks right: random weights per sample.

The rules read sample i's gradient of a layer from row i of its output gradient. That is right
only if row i of the layer's output belongs to sample i alone: computed from that sample and
used by that sample's loss only. A (T, T) table of relative-position buckets with T equal to the
batch size, or a weight computed by a submodule (a hypernetwork) with as many rows as the batch,
has the batch's size without being the batch; a normalisation over the batch mixes the samples
after the layer. The batch gradient (``divebatch.meter.grad_check``) cannot see either: the rows
still add up to it.

Random weights c_i can: on a checked batch, a second backward pass from the model's outputs,
each sample's output gradient scaled by c_i, gives the gradient of sum_i c_i l_i; the layers'
calls, re-run with their output rows scaled by the same c_i, must explain it. Where rows are not
samples the two differ for almost every c. The weights come from the meter's own generator, so
the model's random numbers (dropout) are not disturbed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten

from divebatch.meter.grad_check import relative_difference

# The weights c_i, uniform in [WEIGHT_LOW, WEIGHT_LOW + 1): positive, so that no weighted sum
# cancels, and far enough from each other that mixed rows show.
WEIGHT_LOW = 0.5
SEED = 20260926
# Differences are measured relative to a parameter's weighted gradient, or to this fraction of
# the whole model's if that is more.
NOISE_FLOOR = 1e-3


class SampleWeights:
    """Draws c for every model call of a checked batch, and backpropagates the weighted output
    gradients once all of them have arrived (``weighted_grads``: parameter -> gradient)."""

    def __init__(self, params: list[Tensor]) -> None:
        self._params = params
        self._generator = torch.Generator().manual_seed(SEED)
        self.weighted_grads: dict[Tensor, Tensor] = {}
        self.running = False  # inside the weighted backward: the layers' hooks stay quiet
        self.complete = True  # False if some model output could not be weighted
        # weigh each sample's loss (watch_losses) rather than the model's outputs: any output
        # layout, and a loss that mixes the samples shows too
        self.on_losses = False
        self._last_weights: Tensor | None = None

    def draw(self, batch_size: int) -> Tensor:
        return torch.rand(batch_size, generator=self._generator, dtype=torch.float64) + WEIGHT_LOW

    def watch(self, output: object, weights: Tensor) -> None:
        """Hook the model's outputs: once backward has their gradients, backpropagate them again
        with each sample's rows scaled by its weight. A scalar output (a loss the model
        computes) is left out: its gradient reaches the parameters through the other outputs."""
        if self.on_losses:
            self._last_weights = weights
            return
        tensors = [t for t in tree_flatten(output)[0]
                   if isinstance(t, Tensor) and t.requires_grad and t.dim() > 0]
        if not tensors:
            self.complete = False  # nothing to weigh: rows unknown
            return
        for tensor in tensors:
            if tensor.shape[0] != len(weights):
                raise output_without_batch_first(tensor, len(weights))
        self._hook(tensors, weights)

    def watch_losses(self, losses: Tensor) -> None:
        """Weigh the per-sample losses of the last model call (``on_losses``)."""
        weights = self._last_weights
        if weights is None or not losses.requires_grad or losses.shape != weights.shape:
            self.complete = False
            return
        self._hook([losses], weights)

    def _hook(self, tensors: list[Tensor], weights: Tensor) -> None:
        done = []  # once: a second backward over this output (see SqNormHooks.repeated)
        if len(tensors) == 1 and tensors[0].grad_fn is not None:
            # on the node: its hooks run after the tensor's, which the model (or its caller)
            # may put on its output to change the gradient
            output_nr = tensors[0].output_nr
            tensors[0].grad_fn.register_prehook(
                lambda grads: self._backward(tensors, (grads[output_nr],), weights, done))
            return
        torch.autograd.graph.register_multi_grad_hook(
            tensors, lambda grads: self._backward(tensors, grads, weights, done), mode="all")

    def _backward(self, tensors: list[Tensor], grads: tuple, weights: Tensor,
                  done: list) -> None:
        if self.running or done:
            return
        done.append(True)
        used = [(t, scale_rows(g, weights, 0)) for t, g in zip(tensors, grads) if g is not None]
        if not used:
            return
        self.running = True
        try:
            outputs, weighted = zip(*used)
            with tensor_hooks_off(outputs):  # the gradients have been through them already
                grads = torch.autograd.grad(outputs, self._params, weighted, retain_graph=True,
                                            allow_unused=True)
        except RuntimeError:  # part of the graph already freed (an output used by another)
            self.complete = False
            return
        finally:
            self.running = False
        for param, grad in zip(self._params, grads):
            if grad is not None:
                total = self.weighted_grads.get(param)
                self.weighted_grads[param] = grad if total is None else total + grad


def output_without_batch_first(output: Tensor, batch_size: int) -> ValueError:
    return ValueError(
        f"the model's output has shape {list(output.shape)}, whose first dimension is not the "
        f"batch ({batch_size} samples): the meter checks its split into samples by weighting "
        "each sample's rows of the model's outputs, so outputs must have the batch first; "
        "return them batch-first and permute them in the loss (logits.transpose(0, 1) for "
        "F.ctc_loss)")


@contextmanager
def tensor_hooks_off(tensors: tuple[Tensor, ...]) -> Iterator[None]:
    """Without the gradient hooks on ``tensors`` (their hooks dicts emptied, then restored)."""
    kept = [(hooks, dict(hooks)) for hooks in (t._backward_hooks for t in tensors) if hooks]
    for hooks, _ in kept:
        hooks.clear()
    try:
        yield
    finally:
        for hooks, entries in kept:
            hooks.update(entries)


def scale_rows(grad: Tensor, weights: Tensor, dim: int) -> Tensor:
    """``grad`` with its slices along ``dim`` (the samples) scaled by ``weights``."""
    shape = [1] * grad.dim()
    shape[dim] = len(weights)
    return grad * weights.to(grad.device, grad.dtype).view(shape)


def check_weighted(actual: dict[Tensor, Tensor], explained: dict[Tensor, Tensor],
                   tolerances: dict[Tensor, float], order: list[Tensor], owners: dict) -> None:
    """Raise if the calls' gradient with weighted rows is not autograd's gradient of the
    weighted loss, naming the holder of the first such parameter in ``order`` (the order in
    which backward reached the calls: the module called last in the forward first, the one
    nearest to where samples mix)."""
    # a parameter whose gradient is rounding noise (a key projection's bias, which softmax
    # ignores) is compared on the scale of the whole gradient
    floor = NOISE_FLOOR * float(sum(g.double().square().sum() for g in actual.values())) ** 0.5
    for param in order:
        if param not in actual:  # no weighted gradient: a fused weight (divebatch.meter.rules.conv)
            continue
        scale = max(float(torch.linalg.vector_norm(actual[param].double())), floor)
        difference = relative_difference(explained[param], actual[param]) * float(
            torch.linalg.vector_norm(actual[param].double())) / max(scale, 1e-300)
        if difference > tolerances[param]:
            owner = owners[param][0]
            path = owner.path or "model"
            raise ValueError(
                f"{path} ({type(owner.module).__name__}): the per-sample gradients of "
                f"{owner.name} do not add up to the gradient of a randomly weighted sum of the "
                f"samples' losses ({difference:.1%} off): the rows of its output are not the "
                "samples (a tensor whose first dimension equals the batch size by coincidence, "
                "such as a (T, T) table with T = N, or a weight made by a submodule), or "
                "the samples are mixed after it (a statistic over the batch, as in a "
                "normalisation over the batch, or a loss over pairs of samples, as in a "
                "contrastive loss), so per-sample norms would be wrong; freeze its "
                "parameters (requires_grad_(False)) or make the layers after it and the loss "
                "treat every sample on its own")
