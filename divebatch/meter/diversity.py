"""Per-sample gradient norms and gradient diversity (Yin et al. 2018), from one backward pass.

Gradient diversity of per-sample gradients g_1..g_N is

    Delta = sum_i ||g_i||^2 / ||sum_i g_i||^2          (1/N when all g_i are equal)

The denominator is the ordinary batch gradient. The numerator comes from per-layer rules
(``divebatch.meter.rules``): a forward hook keeps each layer's input (GroupNorm also the
statistics autograd saved), a hook on the layer's output receives dL/d(output) during the
ordinary backward pass, and the layer's rule turns (input, output gradient) into the squared
norm of every sample's gradient of that layer's own parameters. A plain ``nn.Sequential`` of
``nn.Linear`` layers (an MLP, a linear model) runs its measured batches without layer hooks
(``divebatch.meter.sequential``).

BatchNorm in training mode mixes samples through batch statistics, so per-sample gradients are
not defined and the functions here raise ``ValueError`` unless called with
``allow_batchnorm=True``. Then BatchNorm layers use the GroupNorm-style rule with the batch
statistics held fixed, which ignores the cross-sample terms: an approximation, flagged by
``DiversityMeter.approximate``.

Every parameter gets exact per-sample norms, or the call raises ``ValueError`` naming the module,
the reason and what to do (layer by layer: docs/user-guide.md). The first measured batch of a
meter and every call of the functions here check the split into samples
(``divebatch.meter.grad_check``, ``divebatch.meter.sample_weights``).
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from divebatch.meter.broadcast import failed_after_expansion
from divebatch.meter.hooks import FUSED_RULES, SqNormHooks
from divebatch.meter.one_batch import EPS, gradient_diversity, per_sample_grad_sq_norms
from divebatch.meter.owners import (Layers, TrainableParams, batchnorm_layers, check_batchnorm,
                                    parameter_owners)
from divebatch.meter.rules import RULES, register_rule
from divebatch.meter.sequential import SequentialForward, plain_linears, runs_plainly

__all__ = ["DiversityMeter", "EPS", "FUSED_RULES", "gradient_diversity",
           "per_sample_grad_sq_norms", "register_rule", "RULES"]

# DiversityMeter measures every batch by default: per-sample squared norms are heavy-tailed once
# training fits most samples, and measuring every k-th batch missed the every-batch Delta_hat by
# 7-23 % at k = 2-4 (benchmarks/diversity_sampling.py); larger k is a speed knob.
DEFAULT_SAMPLE_EVERY = 1
# How DiversityMeter scales S over measured batches up to all batches (see its docstring).
ESTIMATORS = ("ratio", "count")
# The batches' ||g_i||^2 wait, and are added to S this many measured batches at a time (and
# whenever S is read): an addition costs a small model's step more than its arithmetic.
PENDING_BATCHES = 16


class DiversityMeter:
    """Running epoch estimate Delta_hat = S / (||G||^2 + EPS) along the training trajectory.

    S sums ||g_i||^2 and G sums g_i over the samples seen since ``reset()``, each at the
    iterate where it was used. G comes from ``param.grad`` of every batch (no extra work);
    S comes from per-sample norms on every ``sample_every``-th batch, the first batch after
    ``reset()`` included. Layer hooks exist only during a measured batch, unless
    ``keep_hooks``.

    ``keep_hooks`` (default False): the hooks of a measured batch stay on the model, ignoring
    its calls, while the next batch is measured too (placing them anew costs a small model a few
    percent of its step: the trainer keeps them). They go before an unmeasured batch, after a
    failed one, by ``detach()``, on leaving ``with meter`` and when the meter is collected; call
    ``detach()`` before copying or pickling the model, or ``torch.compile``.

    With ``sample_every`` > 1, S over the measured batches is scaled up to all batches by
    ``estimator``:

    - "ratio" (default): by C_seen / C_measured, where C sums ||G_b||^2 of every batch (one
      fused norm of ``param.grad``). A few badly fitted samples dominate both S_b and ||G_b||^2
      of their batches, so this ratio estimator (Cochran, Sampling Techniques, ch. 6) follows
      them where the count misses them: on the digits CNN it cut the error against the
      every-batch Delta_hat three- to tenfold (``benchmarks/diversity_sampling.py``); bias
      of order 1 / measured batches.
    - "count": by samples seen / samples measured: unbiased over random batch orders.
    Change ``sample_every`` only right after ``reset()``.

    ``reduction`` says how the batch loss combines per-sample losses: "mean" (then
    ``param.grad`` is sum_i g_i / B and the hooks see g_i / B; both are rescaled) or "sum".
    Weight decay applied by the optimizer is not part of ``param.grad`` and so not of g_i.

    Gradient accumulation: one ``track`` may wrap several forward/backward passes over parts
    of the batch (micro-batches), each backpropagating its share of the batch loss ("mean": its
    per-sample losses' sum / ``batch_size``); G is read once, S sums every pass's norms.
    Several processes (DistributedDataParallel): each runs ``samples`` of the batch,
    ``param.grad`` must be the whole batch's gradient (DDP summing, not averaging, the
    processes' gradients: ``divebatch.training.distributed``); ``reduce`` sums S over them.
    BatchNorm in training mode raises ``ValueError`` unless ``allow_batchnorm=True``, which makes
    the estimate approximate (``approximate`` becomes True; see the module docstring). The
    first measured batch also checks the split into samples (the module docstring), so zero the
    gradients before it; so does the first after a parameter is added, removed, frozen,
    unfrozen or given a gradient hook, and the first after ``recheck()``: call it when the
    model starts to use its parameters otherwise (a tie, a penalty in the loss).

    ``fuse_weight_grads`` (default True): on a measured batch, a Conv2d layer whose per-sample
    weight gradients are formed anyway (``divebatch.meter.rules.conv``) gets its batch weight
    gradient from their sum, written into ``weight.grad`` by the meter, instead of from autograd:
    the same value, computed once. Hooks on those weights' gradients do not fire, so pass False
    under DistributedDataParallel (whose reducer relies on them) or with such hooks.

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(4, 2)
    >>> with DiversityMeter(model, sample_every=1) as meter:
    ...     for _ in range(3):
    ...         model.zero_grad()
    ...         with meter.track(batch_size=8):
    ...             loss = model(torch.randn(8, 4)).square().mean()
    ...             loss.backward()
    ...     delta_hat = meter.diversity()
    >>> meter.seen_batches, meter.measured_batches, 1 / 24 <= delta_hat
    (3, 3, True)
    """

    def __init__(self, model: nn.Module, *, sample_every: int = DEFAULT_SAMPLE_EVERY,
                 reduction: str = "mean", allow_batchnorm: bool = False,
                 reduce: Callable[[Tensor], Tensor] | None = None,
                 fuse_weight_grads: bool = True, estimator: str = "ratio",
                 keep_hooks: bool = False) -> None:
        if not isinstance(sample_every, int) or sample_every < 1:
            raise ValueError(f"sample_every should be an int >= 1, but got "
                             f"sample_every={sample_every!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator should be one of {', '.join(ESTIMATORS)}, but got "
                             f"estimator={estimator!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction should be 'mean' or 'sum', but got "
                             f"reduction={reduction!r}")
        self.model = model
        self.sample_every = sample_every
        self.reduction = reduction
        self.allow_batchnorm = allow_batchnorm
        self.reduce = reduce  # sums a tensor over processes (all-reduce); None: one process
        self.fuse_weight_grads = fuse_weight_grads
        self.estimator = estimator
        self.keep_hooks = keep_hooks
        self._batchnorms = batchnorm_layers(model)
        self.approximate = check_batchnorm(self._batchnorms, allow_batchnorm)
        self._layers = Layers(parameter_owners(model))  # worked out once, used every batch
        self._trainable = TrainableParams(model)  # ...until that changes (reset, track)
        self._params = list(self._layers.owners)
        self._linears = plain_linears(model, self._layers)  # divebatch.meter.sequential
        self._hooks: SqNormHooks | SequentialForward | None = None  # placed by track
        self._release_hooks = None
        self._checked = False  # the batch gradient check, on the first measured whole batch
        self.reset()

    def reset(self) -> None:
        """Forget S, G and the counters: call at the start of a measured epoch."""
        if self._trainable.refresh():  # parameters added, removed, frozen or unfrozen
            self._relayout()
        self.seen_batches = 0
        self.measured_batches = 0
        self.samples_seen = 0
        self.samples_measured = 0
        self.seconds = 0.0  # wall seconds of the meter's own work since reset() (see track)
        # running sums live where the parameters (and so the gradients and the norms) live
        device = self._params[0].device if self._params else torch.device("cpu")
        self._sq_norm_sum = torch.zeros((), dtype=torch.float64, device=device)  # S, measured
        # batches' ||g_i||^2 not yet in S, by (weight, dtype): summed together (_fold_sq_norms)
        self._pending_sq_norms: dict[tuple[int, torch.dtype], list[Tensor]] = {}
        self._grad_sum = [torch.zeros_like(p) for p in self._params]  # G, one per parameter
        # C = sum of ||G_b||^2 over all batches and over measured ones (estimator "ratio")
        self._batch_grad_sq_sums = (torch.zeros((), dtype=torch.float64, device=device),
                                    torch.zeros((), dtype=torch.float64, device=device))

    @contextmanager
    def track(self, batch_size: int, *, samples: int | None = None) -> Iterator[None]:
        """Wrap the forward and backward of one batch of ``batch_size`` samples, of which this
        process runs ``samples`` (default: all of them; fewer under DDP).

        ``param.grad`` must hold only this batch's gradient (zero it before the forward).

        Adds to ``seconds`` the meter's own work: attaching the hooks, the layers' rules in
        backward (a fused Conv2d's share beyond the weight gradient autograd skipped) and the
        sums; not the forward hooks' bookkeeping; on CUDA the host's time, unsynchronised.
        """
        started = time.perf_counter()
        if self._trainable.changed():  # S and G must cover the same parameters: start over
            seconds = self.seconds
            self.reset()
            self.seconds = seconds
        hooks = None
        # under DDP param.grad also holds the other processes' share: checked when this
        # process runs the whole batch
        check = not self._checked and samples in (None, batch_size)
        if self.seen_batches % self.sample_every == 0:
            self.approximate |= check_batchnorm(self._batchnorms, self.allow_batchnorm)
            hooks = self._hooks_for_batch(check)
        else:
            self.detach()
        self.seconds += time.perf_counter() - started
        kept = False
        try:
            try:
                yield
            except Exception as error:  # what expansions_named does, without its frames
                if hooks is not None and hooks.expanded and not isinstance(error, ValueError):
                    raise failed_after_expansion(hooks.expanded, error) from error
                raise
            finishing = time.perf_counter()
            grads = [p.grad for p in self._params]
            scale = batch_size if self.reduction == "mean" else 1
            if hooks is not None:
                hooks.check_grads_seen(self._params, grads)
                if check:
                    hooks.check_batch_gradient(self._params, grads)
                    self._checked = True
                self._add_sq_norms(hooks.sq_norms, batch_size,
                                   batch_size if samples is None else samples, scale)
            if self.estimator == "ratio" and self.sample_every > 1:
                self._add_batch_grad_sq(grads, measured=hooks is not None, scale=scale)
            self._add_grad_sum(grads, scale)
            self.seen_batches += 1
            self.samples_seen += batch_size
            self.seconds += time.perf_counter() - finishing + (hooks.seconds if hooks else 0.0)
            kept = (self.keep_hooks and hooks is not None and not check
                    and self.seen_batches % self.sample_every == 0)
        finally:
            if kept:  # the next batch is measured too: its hooks are already in place
                hooks.pause()
            else:
                self.detach()

    def recheck(self) -> None:
        """Check the split into samples again on the next measured whole batch."""
        self._checked = False

    def _relayout(self) -> None:
        """The layers worked out again, for the parameters that train now; checked again."""
        self.detach()
        self._batchnorms = batchnorm_layers(self.model)  # a new one is refused in training
        self._layers = Layers(parameter_owners(self.model))
        self._params = list(self._layers.owners)
        self._linears = plain_linears(self.model, self._layers)
        self._checked = False

    def _hooks_for_batch(self, check: bool) -> SqNormHooks | SequentialForward:
        """The hooks of a measured batch: those the previous measured batch left, or new ones
        (always for a checked batch, whose hooks also keep every call); a plain Sequential's
        unchecked batches run its layers themselves (``divebatch.meter.sequential``)."""
        hooks = self._hooks
        plain = (not check and self._linears is not None
                 and runs_plainly(self.model, self._linears))
        if (hooks is not None and not check and not hooks.checks
                and plain == isinstance(hooks, SequentialForward)):
            hooks.start_batch()
            return hooks
        self.detach()
        hooks = self._hooks = (
            SequentialForward(self.model, self._linears, self._layers) if plain else
            SqNormHooks(self.model, self._layers, check=check, fuse=self.fuse_weight_grads,
                        mixing_allowed=self.approximate))
        # kept hooks outlive track(): a meter dropped without detach() still removes them
        self._release_hooks = (weakref.finalize(self, hooks.remove) if self.keep_hooks
                               else hooks.remove)
        return hooks

    def _add_batch_grad_sq(self, grads: list[Tensor | None], measured: bool,
                           scale: int) -> None:
        present = [g for g in grads if g is not None]
        if not present:
            return
        grad_sq = torch.stack(torch._foreach_norm(present)).square().sum()
        seen, measured_sum = self._batch_grad_sq_sums
        seen.add_(grad_sq, alpha=scale ** 2)
        if measured:
            measured_sum.add_(grad_sq, alpha=scale ** 2)

    def _add_sq_norms(self, sq_norms: Tensor | None, batch_size: int, samples: int,
                      scale: int) -> None:
        if sq_norms is not None:
            if sq_norms.shape[0] != samples:
                raise ValueError(f"the model's layers saw {len(sq_norms)} samples, but got "
                                 f"samples={samples}")
            self._pending_sq_norms.setdefault((scale ** 2, sq_norms.dtype), []).append(sq_norms)
        self.measured_batches += 1
        self.samples_measured += batch_size
        if self.measured_batches % PENDING_BATCHES == 0:
            self._fold_sq_norms()

    def _fold_sq_norms(self) -> None:
        """Add the pending batches' ||g_i||^2 to S: two operations for many batches instead of
        two per batch."""
        for (weight, _), norms in self._pending_sq_norms.items():
            self._sq_norm_sum.add_(torch.sum(torch.cat(norms), dtype=torch.float64),
                                   alpha=weight)
        self._pending_sq_norms.clear()

    def _add_grad_sum(self, grads: list[Tensor | None], scale: int) -> None:
        totals = self._grad_sum
        if not all(g is not None for g in grads):  # parameters without a gradient this batch
            totals = [total for total, g in zip(totals, grads) if g is not None]
            grads = [g for g in grads if g is not None]
        if grads:
            torch._foreach_add_(totals, grads, alpha=scale)  # one call for all parameters

    def diversity(self) -> float:
        """Delta_hat since ``reset()``; NaN before any measured batch."""
        if self.samples_measured == 0:
            return math.nan
        sq_norm_sum = self._estimated_sq_norm_sum()
        grad_sum_sq = sum(float(torch.linalg.vector_norm(g, dtype=torch.float64)) ** 2
                          for g in self._grad_sum)
        return sq_norm_sum / (grad_sum_sq + EPS)

    def _estimated_sq_norm_sum(self) -> float:
        """S over all samples seen, from S over the measured ones (see ``estimator``)."""
        self._fold_sq_norms()
        measured = self._sq_norm_sum if self.reduce is None else self.reduce(self._sq_norm_sum)
        # G_b is the whole batch's gradient on every process: C needs no reduction
        grad_sq_seen, grad_sq_measured = (float(t) for t in self._batch_grad_sq_sums)
        if self.estimator == "ratio" and grad_sq_measured > 0:
            return float(measured) * grad_sq_seen / grad_sq_measured
        return float(measured) * self.samples_seen / self.samples_measured

    @property
    def running_sums(self) -> list[Tensor]:
        """The tensors the meter keeps between batches: S, the sums C of the ratio estimator,
        G (one per parameter), then the batches' ||g_i||^2 not yet added to S; what measuring
        holds in memory."""
        pending = [t for norms in self._pending_sq_norms.values() for t in norms]
        return [self._sq_norm_sum, *self._batch_grad_sq_sums, *self._grad_sum, *pending]

    def detach(self) -> None:
        """Remove every hook this meter placed (see ``track``): leaving ``with meter`` does
        this too."""
        if self._hooks is not None:
            self._release_hooks()
            self._hooks = None

    def __enter__(self) -> DiversityMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.detach()
