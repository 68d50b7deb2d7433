"""Short continuations of a stored run from one of its checkpoints, at another batch size.

A `BranchPoint` opens a checkpoint (`Trainer.state_dict()`) once: the run's model, optimizer
(momentum buffers included), data and LR rule at that epoch. Each `branch` starts again from
exactly that state, trains SGD at a fixed batch size and LR, and records the training loss on
a fixed, seeded subset of the training set (`eval_samples` samples, the model in eval mode)
every `eval_every` examples, until the loss reaches a target or a step limit. The parent run
is never touched: its checkpoint is only read.

The branch's learning rate is the run's LR at the checkpoint rescaled by the run's own rule
for a batch change, g(B / B_checkpoint) with g = 1, r or sqrt(r) (`lr_scaling`), times an
optional `lr_factor` (the "tuned" protocol tries several). It is held constant in the branch:
the branches are short, and a schedule decaying at a different rate per batch size would
blur the comparison.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from divebatch.config import RunConfig
from divebatch.meter.diversity import DiversityMeter

EVAL_CHUNK = 4096  # samples per forward pass of the loss evaluation
DIVERSITY_CHUNK = 256  # samples per forward/backward of the noise-scale pass (as the probe's)


@dataclass
class Branch:
    batch_size: int
    lr: float                       # first param group's LR during the branch
    lr_factor: float                # times the run's rule
    curve: list[tuple[int, float]]  # (step, training loss on the evaluation subset)
    steps: int                      # steps trained
    diverged: bool                  # the loss became NaN or infinite
    seconds: float                  # wall time of the branch, evaluations included

    def to_dict(self) -> dict:
        return asdict(self)


def branch_seed(*parts: int) -> int:
    """A seed for one branch's shuffle from (run seed, epoch, batch size, ...)."""
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0])


class BranchPoint:
    """One checkpoint of a run, ready to branch from (see the module docstring)."""

    def __init__(self, config: RunConfig, state: dict, *, eval_samples: int):
        from divebatch.training.trainer import Trainer  # torch-heavy: only where one branches
        self.config, self.state = config, state
        self.trainer = Trainer(config, resume_from=state)
        self.model, self.optimizer = self.trainer.model, self.trainer.optimizer
        self.problem, self.loss_fn = self.trainer.problem, self.trainer.loss_fn
        self.epoch = int(state["epoch"])
        self.batch_size = self.trainer.scheduler.batch_size  # B at the checkpoint
        self.group_lrs = [group["lr"] for group in self.optimizer.param_groups]
        order = torch.randperm(self.n_train,
                               generator=torch.Generator().manual_seed(config.seed))
        self.eval_indices = order[:eval_samples].to(self.problem.x_train.device)  # (m,)

    @property
    def n_train(self) -> int:
        return self.problem.n_train

    def lr_rule(self, batch_size: int) -> float:
        """The run's LR factor g(B / B_checkpoint) for a change to `batch_size`."""
        ratio = batch_size / self.batch_size
        return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[self.config.lr_scaling]

    @torch.no_grad()
    def loss(self) -> float:
        """Mean training loss over the evaluation subset at the current weights."""
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.eval_indices.device)
        for start in range(0, len(self.eval_indices), EVAL_CHUNK):
            chunk = self.eval_indices[start:start + EVAL_CHUNK]
            outputs = self.model(self.problem.inputs(self.problem.x_train[chunk], False))
            total += self.loss_fn(outputs, self.problem.y_train[chunk]).double().sum()
        self.model.train()
        return float(total) / len(self.eval_indices)

    def restore(self) -> None:
        """Model and optimizer back to the checkpoint."""
        self.model.load_state_dict(self.state["model"])
        self.optimizer.load_state_dict(self.state["optimizer"])

    def diversity(self) -> float:
        """The diversity Delta of the evaluation subset's per-sample gradients at the
        checkpoint, from the meter's two sums (S / |G|^2) over one pass of mean loss."""
        self.restore()
        meter = DiversityMeter(self.model, sample_every=1,
                               allow_batchnorm=self.config.norm == "batch")
        self.model.eval()
        try:
            m = len(self.eval_indices)
            for start in range(0, m, DIVERSITY_CHUNK):
                chunk = self.eval_indices[start:start + DIVERSITY_CHUNK]
                self.optimizer.zero_grad()
                with meter.track(len(chunk)):  # G and S sum over the chunks
                    inputs = self.problem.inputs(self.problem.x_train[chunk], False)
                    losses = self.loss_fn(self.model(inputs), self.problem.y_train[chunk])
                    (losses.sum() / len(chunk)).backward()
            return meter.diversity()
        finally:
            meter.detach()
            self.optimizer.zero_grad()
            self.model.train()

    def branch(self, batch_size: int, *, lr_factor: float, max_steps: int, target: float,
               eval_every: int, seed: int, should_stop=lambda: False) -> Branch | None:
        """Train from the checkpoint at `batch_size` until the evaluated loss is <= target
        (or NaN), or `max_steps`; evaluates after every step that completes another
        `eval_every` examples, and at the last. None if `should_stop()` turned true."""
        started = time.perf_counter()
        self.restore()
        factor = self.lr_rule(batch_size) * lr_factor
        for group, lr in zip(self.optimizer.param_groups, self.group_lrs):
            group["lr"] = lr * factor
        generator = torch.Generator().manual_seed(seed)
        if self.problem.rng is not None:
            self.problem.rng.manual_seed(seed)
        batches = self._batches(batch_size, generator)
        every = max(1, round(eval_every / batch_size))
        curve, diverged, step = [(0, self.loss())], False, 0
        while step < max_steps:
            self._step(next(batches))
            step += 1
            if step % every and step < max_steps:
                continue
            curve.append((step, self.loss()))
            diverged = not math.isfinite(curve[-1][1])
            if diverged or curve[-1][1] <= target:
                break
            if should_stop():
                return None
        return Branch(batch_size, self.group_lrs[0] * factor, lr_factor, curve, step, diverged,
                      time.perf_counter() - started)

    def _batches(self, batch_size: int, generator: torch.Generator):
        """Index batches of exactly `batch_size` from reshuffled passes over the data."""
        device = self.problem.x_train.device
        pending = torch.empty(0, dtype=torch.long)
        while True:
            while len(pending) < batch_size:
                pending = torch.cat([pending, torch.randperm(self.n_train, generator=generator)])
            batch, pending = pending[:batch_size], pending[batch_size:]
            yield batch.to(device)

    def _step(self, batch: torch.Tensor) -> None:
        """One SGD step on the batch's mean loss, in micro-batches if the run caps them."""
        x, y = self.problem.x_train[batch], self.problem.y_train[batch]
        chunk = self.config.max_micro_batch or len(batch)
        self.optimizer.zero_grad()
        for start in range(0, len(batch), chunk):
            outputs = self.model(self.problem.inputs(x[start:start + chunk], True))
            (self.loss_fn(outputs, y[start:start + chunk]).sum() / len(batch)).backward()
        self.optimizer.step()
