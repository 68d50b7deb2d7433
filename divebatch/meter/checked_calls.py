"""What the calls of a checked batch explain (``divebatch.meter.grad_check``): each call re-run on
its arguments and output gradient, summed per parameter; and the refusal of a parameter whose
batch gradient they do not explain."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

from torch import Tensor, nn

from divebatch.meter.calls import rule_failed
from divebatch.meter.functional import autocast_as, replayed
from divebatch.meter.grad_check import explained_grads, relative_difference, tolerance
from divebatch.meter.owners import Layers, Owner
from divebatch.meter.sample_weights import SampleWeights, check_weighted, scale_rows


def explained_by_calls(calls: list[tuple[nn.Module, tuple, Tensor]],
                       params: dict[nn.Module, dict[str, Tensor]],
                       paths: dict[nn.Module, str],
                       ) -> tuple[dict[Tensor, Tensor], dict[Tensor, Tensor], dict[Tensor, float],
                                  list[Tensor]]:
    """Parameter -> the batch gradient the checked calls explain, the same with each sample's
    output rows scaled by its weight c_i, and its tolerance (by the precision of those calls);
    the parameters in the order backward reached them. After backward, outside autograd's
    engine, with the hooks quiet."""
    explained: dict[Tensor, Tensor] = {}
    weighted: dict[Tensor, Tensor] = {}
    tolerances: dict[Tensor, float] = {}
    for module, (args, kwargs, weights, start, autocast), grad_out in calls:
        dim = 1 if isinstance(module, nn.MultiheadAttention) and not module.batch_first else 0
        grad_outs = [grad_out] if weights is None else \
            [grad_out, scale_rows(grad_out, weights, dim)]
        try:
            random, buffers = (None, None) if start is None else start
            with replayed(random) if random is not None else nullcontext(), \
                    autocast_as(autocast):
                plain, *scaled = explained_grads(module, params[module], args, kwargs,
                                                 grad_outs, buffers)
        except Exception as error:  # noqa: BLE001
            raise rule_failed(paths[module], module, error) from error
        scaled = scaled[0] if scaled else plain
        for name in plain:
            param = params[module][name]
            tolerances[param] = max(tolerances.get(param, 0.0), tolerance(grad_out))
            for total, grads in ((explained, plain), (weighted, scaled)):
                total[param] = grads[name] + total[param] if param in total else grads[name]
    return explained, weighted, tolerances, list(explained)


def unexplained_gradient(held: list[Owner], difference: float, param: Tensor) -> ValueError:
    paths = " and ".join(o.path for o in held)
    name = held[0].param_path
    start = (f"parameter {name}: {difference:.1%} of its gradient does not come from the calls "
             f"of {paths}")
    if getattr(param, "_backward_hooks", None):
        return ValueError(
            f"{start}: the parameter has a gradient hook (register_hook), which changes its "
            "gradient after the calls, where per-sample norms cannot follow; remove the hook "
            "(mask or scale the loss instead) or freeze the parameter")
    return ValueError(
        f"{start}: something else adds to it or changes it, which per-sample norms would "
        f"miss: a use outside their forward (weight tying by direct use such as "
        f"F.linear(h, {name}), a functional call: make every use a module call, e.g. a tied "
        "head as an nn.Linear whose weight is this Parameter), a penalty on the parameter in "
        "the loss (use the optimizer's weight_decay), or a change to .grad inside "
        "`with meter.track()` (clip_grad_norm_: clip after the block); or freeze the parameter")


def more_than_one_backward(repeated: Sequence[str]) -> ValueError:
    names = list(dict.fromkeys(repeated))
    return ValueError(
        f"{' and '.join(names)}: {'its output' if len(names) == 1 else 'their outputs'} "
        "received gradients "
        "from more than one backward pass over the same forward (several losses, each with its own "
        "backward(retain_graph=True), or a gradient penalty that differentiates the gradients "
        "with torch.autograd.grad(..., create_graph=True)), and the parameters' gradient is not "
        "what one backward gives; per-sample norms are taken from one backward per forward: add "
        "the losses and call backward once (a penalty on the gradients cannot be measured)")


def check_explained(calls: list[tuple[nn.Module, tuple, Tensor]], layers: Layers,
                    params: Sequence[Tensor], grads: Sequence[Tensor | None],
                    weights: SampleWeights | None, repeated: Sequence[str] = ()) -> None:
    """Raise if ``calls`` do not explain a parameter's batch gradient ``grads``, or (with
    ``weights``) the gradient of the randomly weighted loss (``SqNormHooks.check_batch_gradient``,
    with the hooks quiet); ``repeated``: calls whose output got a second backward, named as the
    cause."""
    explained, weighted, tolerances, order = explained_by_calls(calls, layers.params, layers.paths)
    # one call in low precision (autocast) rounds the output gradients of every layer before it
    tolerances = dict.fromkeys(tolerances, max(tolerances.values(), default=0.0))
    for param, param_grad in zip(params, grads):
        if param_grad is None:
            continue
        difference = relative_difference(explained.get(param), param_grad)
        if difference > tolerances.get(param, tolerance(param_grad)):
            raise (more_than_one_backward(repeated) if repeated
                   else unexplained_gradient(layers.owners[param], difference, param))
    if weights is not None and weights.complete:
        check_weighted(weights.weighted_grads, weighted, tolerances, order, layers.owners)
