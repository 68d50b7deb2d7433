"""Modules without a rule of their own: per-sample gradients of their own parameters by re-running
the module (a layer scale, a class token, a custom norm, a parametrization).

- Deterministic calls: ``vmap`` of ``grad`` of the module re-run on one sample at a time
  (torch.func). Tensor arguments whose first dimension is N are split by sample, all others are
  shared. The re-run must reproduce the module's recorded output: a module whose output rows are
  not computed from their own samples alone (a statistic over the batch, a tensor that has N rows
  by coincidence) does not, and is refused.
- Calls that drew random numbers (dropout, stochastic depth in training mode): the module is
  re-run on the whole batch from the random state its forward started from, so that it draws
  the same masks (checked: it must reproduce its output), and each sample's gradient is the
  vector-Jacobian product of its own output rows.

Anything that fails in a re-run is raised as ``UnsupportedCall``; the hooks add the module's path.
Buffers are copied for the re-run, so running statistics are left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from divebatch.meter.grad_check import LOW_PRECISION_TOLERANCE, relative_difference, tolerance
from divebatch.meter.kernels import PER_SAMPLE_GRADS_ELEMENTS, sq_norms, trainable_direct_params
from divebatch.meter.calls import UnsupportedCall, rerun


class RandomState(NamedTuple):
    """The random number generators a module call may draw from: the CPU's and its device's."""
    cpu: Tensor
    cuda: tuple[int, Tensor] | None

    @classmethod
    def now(cls, device: torch.device) -> RandomState:
        if device.type != "cuda":
            return cls(torch.get_rng_state(), None)
        index = torch.cuda.current_device() if device.index is None else device.index
        return cls(torch.get_rng_state(), (index, torch.cuda.get_rng_state(index)))

    def differs(self, other: RandomState) -> bool:
        cuda_differs = self.cuda is not None and other.cuda is not None and not torch.equal(
            self.cuda[1], other.cuda[1])
        return cuda_differs or not torch.equal(self.cpu, other.cpu)


class CallStart(NamedTuple):
    """Where a call of a module without a rule started: the random generators (None once the
    call turned out not to draw) and copies of the module's buffers, which a call may update in
    place (a spectral norm's power iteration): a re-run starts from both."""
    random: RandomState | None
    buffers: dict[str, Tensor]

    @classmethod
    def now(cls, module: nn.Module, device: torch.device) -> CallStart:
        return cls(RandomState.now(device), {n: b.clone() for n, b in module.named_buffers()})


class RecordedOutput(NamedTuple):
    """A call's output as the call returned it, which its re-run must reproduce: the tensor
    (detached), its version then, and a weighted sum of squares per sample, which still
    holds after the caller changed the tensor in place (``out += residual``)."""
    tensor: Tensor
    version: int
    row_sums: Tensor  # (N,)

    @classmethod
    def of(cls, output: Tensor) -> RecordedOutput:
        output = output.detach()
        return cls(output, output._version, _weighted_row_sums(output))

    def difference(self, again: Tensor) -> float:
        """Relative difference of a re-run's output from this one."""
        if again.numel() != self.tensor.numel():
            return 1.0
        again = again.reshape(self.tensor.shape)
        if self.tensor._version == self.version:
            return relative_difference(again, self.tensor)
        return relative_difference(_weighted_row_sums(again), self.row_sums)


def _weighted_row_sums(output: Tensor) -> Tensor:
    """sum_j w_j y_ij^2 per sample i, weights rising along the row (a moved value counts)."""
    rows = output.detach().reshape(max(output.shape[0], 1) if output.dim() else 1, -1)
    rows = rows.to(torch.promote_types(rows.dtype, torch.float32))  # bf16 sums drift
    weights = torch.linspace(1.0, 2.0, rows.shape[1], dtype=rows.dtype, device=rows.device)
    return torch.linalg.vecdot(rows, rows * weights)


class RecordedCall(NamedTuple):
    """What the hooks keep of a call of a module without a rule (``recorded_sq_norms``)."""
    args: tuple
    kwargs: dict
    output: RecordedOutput  # the re-run must reproduce it
    start: CallStart | None
    autocast: Autocast | None  # the autocast it ran under


Autocast = tuple[str, torch.dtype]  # device type, dtype


def autocast_state(device: torch.device) -> Autocast | None:
    """The autocast a call on ``device`` runs under now (None: none), for its re-runs."""
    kind = device.type
    return (kind, torch.get_autocast_dtype(kind)) if torch.is_autocast_enabled(kind) else None


@contextmanager
def autocast_as(state: Autocast | None) -> Iterator[None]:
    """Run under the autocast ``state`` recorded (None: as things are)."""
    if state is None:
        yield
        return
    with torch.autocast(state[0], dtype=state[1]):
        yield


def recorded_sq_norms(module: nn.Module, call: RecordedCall, grad_out: Tensor) -> Tensor:
    """``functional_sq_norms`` of a recorded call, re-run under the autocast it ran under."""
    with autocast_as(call.autocast):
        return functional_sq_norms(module, call.args, call.kwargs, grad_out, call.output,
                                   call.start)


@contextmanager
def replayed(state: RandomState) -> Iterator[None]:
    """Draw from ``state``; the generators are restored afterwards."""
    devices = [] if state.cuda is None else [state.cuda[0]]
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state.cpu)
        if state.cuda is not None:
            torch.cuda.set_rng_state(state.cuda[1], state.cuda[0])
        yield


def functional_sq_norms(module: nn.Module, args: tuple, kwargs: dict, grad_out: Tensor,
                        output: RecordedOutput | None = None,
                        start: CallStart | None = None) -> Tensor:
    """Squared norms of ``functional_per_sample_grads``."""
    grads = functional_per_sample_grads(module, args, kwargs, grad_out, output, start)
    return sum(sq_norms(g) for g in grads.values())


def functional_per_sample_grads(module: nn.Module, args: tuple, kwargs: dict, grad_out: Tensor,
                                output: RecordedOutput | None = None,
                                start: CallStart | None = None) -> dict[str, Tensor]:
    """{name: (N, *param.shape)}: every sample's gradient of the module's own trainable
    parameters. ``output``: the call's recorded output (the re-run must reproduce it);
    ``start``: the random state the call's draws started from (if it drew) and its buffers
    before the call (default: the buffers as they are)."""
    buffers = None if start is None else start.buffers
    try:
        if start is not None and start.random is not None:
            with replayed(start.random):
                return _replayed_per_sample_grads(module, args, kwargs, grad_out, output,
                                                  buffers)
        return _vmapped_per_sample_grads_of(module, args, kwargs, grad_out, output, buffers)
    except UnsupportedCall:
        raise
    except Exception as error:  # noqa: BLE001  (any failure of a re-run is a refusal)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UnsupportedCall(
            f"re-running it to take per-sample gradients failed ({type(error).__name__}: "
            f"{reason}); it may mix the samples (a statistic over the batch, a buffer updated in "
            "place) or do what torch.func cannot; freeze its parameters "
            "(requires_grad_(False)) or measure without this module") from None


def _detached(value: object) -> object:
    return value.detach() if isinstance(value, Tensor) else value


def _state(module: nn.Module, params: dict[str, Tensor],
           buffers: dict[str, Tensor] | None) -> dict[str, Tensor]:
    """The parameters given, over copies of ``buffers`` (default: the module's)."""
    buffers = dict(module.named_buffers()) if buffers is None else buffers
    return {**{name: b.clone() for name, b in buffers.items()}, **params}


def _check_reproduced(again: Tensor, output: RecordedOutput | None, how: str) -> None:
    if output is None:
        return
    difference = output.difference(again)
    # a call under autocast rounds in bf16/fp16 where the batch and a sample may differ
    limit = LOW_PRECISION_TOLERANCE if torch.is_autocast_enabled(output.tensor.device.type) \
        else tolerance(output.tensor)
    if difference > limit:
        raise UnsupportedCall(
            f"{how}, it does not reproduce its output ({difference:.1%} off): its output rows "
            "are not computed from their own samples alone (a statistic over the batch, as in "
            "a normalisation over the batch; a tensor with as many rows as the batch by "
            "coincidence) or it draws random numbers it cannot replay, so per-sample gradients "
            "cannot be taken from it; freeze its parameters (requires_grad_(False)) or make it "
            "treat every sample on its own")


def _vmapped_per_sample_grads_of(module: nn.Module, args: tuple, kwargs: dict,
                                 grad_out: Tensor, output: RecordedOutput | None,
                                 buffers: dict | None) -> dict[str, Tensor]:
    """``_vmapped_per_sample_grads``; where the re-run fails to reproduce the output and the
    call got the batch size as an int (``latents.expand(batch_size, -1, -1)``, Perceiver's
    latents), once more with 1 there, as each sample's call would have it: the output must
    then be reproduced, so a size that only equals the batch's by chance is still refused."""
    try:
        return _vmapped_per_sample_grads(module, args, kwargs, grad_out, output, buffers)
    except UnsupportedCall:
        n_samples = grad_out.shape[0]
        one = tuple(1 if _is_size(a, n_samples) else a for a in args)
        one_kwargs = {k: 1 if _is_size(v, n_samples) else v for k, v in kwargs.items()}
        if one == args and one_kwargs == kwargs:
            raise
        try:
            return _vmapped_per_sample_grads(module, one, one_kwargs, grad_out, output, buffers)
        except Exception:  # noqa: BLE001  (the first attempt's reason is the one to give)
            pass
        raise


def _is_size(value: object, n_samples: int) -> bool:
    return type(value) is int and value == n_samples and n_samples != 1


def _vmapped_per_sample_grads(module: nn.Module, args: tuple, kwargs: dict, grad_out: Tensor,
                              output: RecordedOutput | None, buffers: dict | None
                              ) -> dict[str, Tensor]:
    n_samples = grad_out.shape[0]
    params = {name: p.detach() for name, p in trainable_direct_params(module)}

    def batched_dims(value: object) -> int | None:
        is_batched = isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n_samples
        return 0 if is_batched else None

    args_dims = tuple(batched_dims(a) for a in args)
    kwargs_dims = {key: batched_dims(v) for key, v in kwargs.items()}

    def as_batch_of_one(value: object, dim: int | None) -> object:
        return value.unsqueeze(0) if dim == 0 else value

    def output_dot_grad(state: dict, sample_args: tuple, sample_kwargs: dict,
                        sample_grad: Tensor) -> tuple[Tensor, Tensor]:
        one_args = tuple(as_batch_of_one(a, d) for a, d in zip(sample_args, args_dims))
        one_kwargs = {k: as_batch_of_one(v, kwargs_dims[k]) for k, v in sample_kwargs.items()}
        one_output = rerun(module, state, one_args, one_kwargs)
        one_output = one_output[0] if isinstance(one_output, tuple) else one_output
        return (one_output * sample_grad.unsqueeze(0)).sum(), one_output

    def per_sample(params: dict, buffers: dict, *call: object) -> tuple[dict, Tensor]:
        return grad(lambda p, *rest: output_dot_grad({**buffers, **p}, *rest),
                    has_aux=True)(params, *call)

    buffers = _state(module, {}, buffers)
    grads, outputs = vmap(per_sample, in_dims=(None, None, args_dims, kwargs_dims, 0))(
        params, buffers, tuple(map(_detached, args)), {k: _detached(v) for k, v in kwargs.items()},
        grad_out.detach())
    _check_reproduced(outputs, output, "re-run one sample at a time")
    return grads


def _replayed_per_sample_grads(module: nn.Module, args: tuple, kwargs: dict, grad_out: Tensor,
                               output: RecordedOutput | None, buffers: dict | None
                              ) -> dict[str, Tensor]:
    leaves = {name: p.detach().requires_grad_() for name, p in trainable_direct_params(module)}
    with torch.enable_grad():
        again = rerun(module, _state(module, leaves, buffers), tuple(map(_detached, args)),
                      {k: _detached(v) for k, v in kwargs.items()})
        again = again[0] if isinstance(again, tuple) else again
        if again.shape != grad_out.shape:  # a shared call's output, expanded over the batch
            again = again.expand(grad_out.shape)
        _check_reproduced(again.detach(), output, "re-run from the random state of its call")
        grads: dict[str, list[Tensor]] = {name: [] for name in leaves}
        rows = max(1, PER_SAMPLE_GRADS_ELEMENTS // max(1, grad_out.numel()))
        for start in range(0, grad_out.shape[0], rows):
            chunk = slice(start, start + rows)
            one_hot = grad_out.new_zeros(min(rows, grad_out.shape[0] - start), *grad_out.shape)
            for k, i in enumerate(range(*chunk.indices(grad_out.shape[0]))):
                one_hot[k, i] = grad_out[i]
            per_sample = torch.autograd.grad(again, list(leaves.values()), one_hot,
                                             retain_graph=True, is_grads_batched=True,
                                             allow_unused=True)
            for (name, leaf), g in zip(leaves.items(), per_sample):
                grads[name].append(torch.zeros(len(one_hot), *leaf.shape, dtype=leaf.dtype,
                                               device=leaf.device) if g is None else g)
    return {name: torch.cat(parts) for name, parts in grads.items()}
