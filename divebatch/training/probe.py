"""Chart-only gradient diversity: every method's Delta_hat on a fixed probe, outside training.

DiveBatch measures diversity along its training trajectory in its resize epochs, and that
measurement is part of its training time (as in the paper). The charts also draw a diversity
curve for SGD and AdaBatch, which never measure; that curve comes from here: after each epoch's
timed loop (like evaluation), the gradient diversity of a fixed, seeded subset of the training
set (PROBE_SAMPLES samples, no augmentation, the model in eval mode) at the epoch-end weights.
It never steps the optimizer, never touches the random streams training uses, and leaves no
gradient behind, so a run trains identically with or without it.

The probe's Delta_m over its m samples is stored scaled to the training set, Delta_m * m / n,
so that n * Delta (Yin's batch-size bound) reads on the charts as m * Delta_m: both estimate
1 + the gradient noise scale while that is well below m; near the optimum, where noise
dominates, the probe's bound saturates at m.
"""

from __future__ import annotations

import torch
from torch import nn

from divebatch.data.problem import Problem
from divebatch.meter.diversity import DiversityMeter

PROBE_SAMPLES = 1024  # training samples in the probe (all of them when fewer)
PROBE_CHUNK = 256     # samples per forward/backward, at most


class DiversityProbe:
    def __init__(self, model: nn.Module, problem: Problem, loss_fn, dist, outputs, seed: int,
                 allow_batchnorm: bool):
        self.model, self.problem, self.loss_fn = model, problem, loss_fn
        self.dist, self.outputs = dist, outputs  # outputs(forward, inputs): the trainer's
        order = torch.randperm(problem.n_train, generator=torch.Generator().manual_seed(seed))
        self.indices = order[:PROBE_SAMPLES].to(problem.x_train.device)  # (m,)
        self.meter = DiversityMeter(model, sample_every=1, allow_batchnorm=allow_batchnorm,
                                    reduce=dist.all_sum,
                                    fuse_weight_grads=dist.world_size == 1)

    def measure(self, max_chunk: int = PROBE_CHUNK) -> float:
        """Delta_hat of the probe at the current weights, scaled to the training set, in
        forward/backward passes of at most min(max_chunk, PROBE_CHUNK) samples."""
        chunk = max(1, min(max_chunk, PROBE_CHUNK))
        was_training = self.model.training
        self.model.eval()
        self.meter.reset()
        m = len(self.indices)
        try:
            for start in range(0, m, chunk):
                self._chunk(self.indices[start:start + chunk], m)
            return self.meter.diversity() * m / self.problem.n_train
        finally:
            self.meter.detach()
            for param in self.model.parameters():
                param.grad = None
            self.model.train(was_training)

    def _chunk(self, batch: torch.Tensor, m: int) -> None:
        """One part of the probe, as one tracked 'batch' of a mean loss over the whole probe
        (so G sums the probe's per-sample gradients)."""
        inputs = self.dist.shard(self.problem.inputs(self.problem.x_train[batch],
                                                     training=False))
        targets = self.dist.shard(self.problem.y_train[batch])
        for param in self.model.parameters():
            param.grad = None
        with self.meter.track(len(batch), samples=len(targets)):
            outputs = self.outputs(lambda x: self.dist.forward(self.model, x), inputs)
            (self.loss_fn(outputs, targets).sum() / len(batch)).backward()
