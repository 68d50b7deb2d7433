"""The epoch loop: SGD, a base LR schedule, a batch-size scheduler, diversity and records.

>>> result = train(RunConfig(problem="least_squares", n_samples=400, dim=8, epochs=2))
>>> [r.epoch for r in result.records], result.status
([1, 2], 'completed')
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from divebatch.training import checkpoint
from divebatch.training.controls import RunControls, Wait
from divebatch.training.instruments import ChartInstruments
from divebatch.config import HOT_FIELDS, RunConfig
from divebatch.data.problem import Problem, correct_predictions, per_sample_loss
from divebatch.data.problems import load_problem
from divebatch.device_options import (make_optimizer, out_of_memory, plain_forward_model,
                                      resolve_device, to_device)
from divebatch.training.distributed import Distributed
from divebatch.meter.diversity import DiversityMeter
from divebatch.models.registry import build_model
from divebatch.training.probe import DiversityProbe
from divebatch.schedulers import AdaBatch, DiveBatch, FixedBatch

EVAL_CHUNK = 4096  # validation samples per forward pass


# EpochRecord fields that measure the clock: they differ between two runs with equal results.
TIMING_FIELDS = ("train_time", "wall_time", "step_ms", "instrument_time", "measure_time")


@dataclass
class EpochRecord:
    epoch: int                    # counted from 1
    step: int                     # optimizer steps so far (cumulative)
    samples_seen: int             # training samples so far (cumulative)
    train_time: float             # seconds of training in this epoch, evaluation excluded
    wall_time: float              # seconds since the run started, evaluation included
    batch_size: int               # batch size used in this epoch
    lr: float                     # learning rate of the first param group in this epoch
    diversity: float | None       # Delta_hat the method measured while training this epoch
                                  # (DiveBatch's resize epochs, timed); None otherwise
    train_loss: float             # mean training loss over this epoch's samples
    val_loss: float
    val_acc: float | None         # fraction in [0, 1]; None for regression
    next_batch_size: int          # batch size the scheduler chose for the next epoch
    delta: float | None           # hot parameters in force during this epoch
    max_batch_size: int
    resize_every: int
    lr_multiplier: float
    step_ms: float                # mean wall milliseconds per optimizer step
    measured_batches: int = 0     # batches whose per-sample norms were measured
    probe_diversity: float | None = None  # chart-only Delta_hat of a fixed probe after the
                                          # epoch (divebatch.training.probe); None when off
    instrument_time: float = 0.0  # seconds the probe took (in wall_time, not in train_time)
    measure_time: float = 0.0     # seconds of the diversity meter's own work in this epoch
                                  # (part of train_time; DiversityMeter.seconds)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    status: str                   # completed, stopped, diverged or failed (out of memory)
    records: list[EpochRecord]
    message: str = ""
    n_train: int = 0
    diversity_approximate: bool = False
    events: list[dict] = field(default_factory=list)
    initial: dict | None = None   # the starting point the charts draw at epoch 0 (Trainer.initial)


def make_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer, n_train: int):
    if config.method == "sgd":
        return FixedBatch(optimizer, batch_size=config.batch_size)
    if config.method == "adabatch":
        return AdaBatch(optimizer, initial_batch_size=config.batch_size,
                        max_batch_size=config.max_batch_size,
                        resize_every=config.resize_every, factor=config.adabatch_factor,
                        lr_scaling=config.lr_scaling, lr_decay=config.adabatch_lr_decay)
    return DiveBatch(optimizer, n_samples=n_train, initial_batch_size=config.batch_size,
                     max_batch_size=config.max_batch_size, delta=config.delta,
                     resize_every=config.resize_every, lr_scaling=config.lr_scaling,
                     min_batch_size=config.min_batch_size or None,
                     monotone=config.min_batch_size == 0)


def make_lr_schedule(config: RunConfig, optimizer: torch.optim.Optimizer):
    """Chainable per-epoch base schedule (multiplies the current LR, so batch-size LR
    factors and hot multipliers compose with it); None for constant."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        milestones = sorted({max(1, config.epochs // 2), max(1, (3 * config.epochs) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    return None


class Trainer(RunControls, ChartInstruments):
    """One run's state; `train()` below is the public entry point."""

    def __init__(self, config: RunConfig, on_epoch=None, control=None, on_progress=None,
                 on_event=None, on_start=None, checkpoint_path=None, resume_from=None):
        config.validate()
        self.config = config
        self.on_epoch, self.on_progress = on_epoch, on_progress
        self.on_event, self.on_start = on_event, on_start
        self.dist = Distributed.setup(resolve_device(config.device))  # one rank under torchrun
        self.device = self.dist.device
        self.control = self.dist.control(control)  # rank 0's messages, on every rank
        torch.manual_seed(config.seed)
        self.problem: Problem = load_problem(config, self.device)
        self.model = self._build_model()
        self.dist.wrap(self.model)
        self.loss_fn = per_sample_loss(self.problem.task)
        self.plain_model = plain_forward_model(self.model, config.compile_forward
                                               and self.dist.world_size == 1)
        self.optimizer = make_optimizer(self.model.parameters(), lr=config.lr,
                                        momentum=config.momentum,
                                        weight_decay=config.weight_decay, device=self.device)
        self.scheduler = make_scheduler(config, self.optimizer, self.problem.n_train)
        self.lr_schedule = make_lr_schedule(config, self.optimizer)
        self.meter = DiversityMeter(self.model, allow_batchnorm=config.norm == "batch",
                                    reduce=self.dist.all_sum,
                                    fuse_weight_grads=self.dist.world_size == 1,
                                    **({"sample_every": config.measure_every}
                                       if config.measure_every else {}))
        self.probe = (DiversityProbe(self.model, self.problem, self.loss_fn, self.dist,
                                     self._outputs, config.seed + 2,
                                     allow_batchnorm=config.norm == "batch")
                      if config.diversity_every_epoch else None)
        self.probe_small = False  # the probe's passes as small as the epoch's batch
        self.shuffle = torch.Generator().manual_seed(config.seed + 1)
        self.lr_multiplier = config.lr_multiplier
        self.records: list[EpochRecord] = []
        self.initial: dict | None = None  # measured before epoch 1 when the probe is on
        self.events: list[dict] = []
        self.step = self.samples_seen = 0
        self.epochs_done = 0
        self.checkpoint_path = checkpoint_path  # written at the end of every epoch if set
        self.result: RunResult | None = None  # set when epochs() ends
        self.started = time.perf_counter()
        self._last_poll = 0.0
        self._apply_lr_multiplier(1.0, config.lr_multiplier)
        if resume_from is not None:
            self.load_state_dict(resume_from if isinstance(resume_from, dict)
                                 else checkpoint.load(resume_from))
        if on_start:
            on_start(self.info())

    def info(self) -> dict:
        """Facts about the run that the config alone does not give."""
        return {"n_train": self.problem.n_train, "n_val": len(self.problem.y_val),
                "task": self.problem.task, "device": str(self.device),
                "model": self.config.resolved_model(),
                "n_params": sum(p.numel() for p in self.model.parameters()),
                "diversity_approximate": self.meter.approximate,
                "processes": self.dist.world_size}

    def _build_model(self) -> nn.Module:
        cfg, problem = self.config, self.problem
        model = build_model(cfg.resolved_model(), input_shape=problem.input_shape,
                            n_outputs=problem.n_outputs, hidden=cfg.hidden, norm=cfg.norm)
        return model.to(self.device, memory_format=self._memory_format())

    def _memory_format(self) -> torch.memory_format:
        """channels-last for image models on CUDA (faster convolutions), else the default."""
        channels_last = (self.device.type == "cuda" and self.config.channels_last
                         and len(self.problem.input_shape) == 3)
        return torch.channels_last if channels_last else torch.contiguous_format

    def _outputs(self, forward, inputs: torch.Tensor) -> torch.Tensor:
        """forward(inputs) under bf16 autocast on CUDA when amp is on; float32 outputs."""
        if self.device.type != "cuda":  # the options are CUDA-only: keep the CPU step lean
            return forward(inputs)
        if inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=self._memory_format())
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.config.amp):
            outputs = forward(inputs)
        return outputs.float()

    def run(self) -> RunResult:
        """Train to the end, sleeping through the waits (pace, pause) between epochs."""
        for piece in self.epochs():
            if isinstance(piece, Wait):
                time.sleep(piece.seconds)
        return self.result

    def epochs(self) -> Iterator[EpochRecord | Wait]:
        """The run, one piece at a time: yields each finished epoch's record (stored and
        checkpointed), then a `Wait` per control poll while pace or pause holds the run, so
        the caller may train other runs meanwhile. `self.result` holds the outcome at the end."""
        status, message = "completed", ""
        try:
            if self.epochs_done == 0 and self.probe is not None:
                yield from self._initial_point()
            if self.epochs_done == 0:
                self._save_checkpoint(0)
            for epoch in range(self.epochs_done + 1, self.config.epochs + 1):
                epoch_started = time.perf_counter()
                try:
                    record = self._run_epoch(epoch)
                except RuntimeError as error:  # torch.OutOfMemoryError is one
                    if not out_of_memory(error):
                        raise
                    status, message = "failed", self._out_of_memory_message(epoch)
                    self._event("out_of_memory", message, epoch)
                    break
                if record is None:
                    status, message = "stopped", f"stopped during epoch {epoch}"
                    break
                self.records.append(record)
                self.epochs_done = epoch
                if self.on_epoch:
                    self.on_epoch(record)
                if not _finite(record.train_loss):
                    status = "diverged"
                    message = (f"training loss became {record.train_loss} in epoch {epoch}; "
                               f"try a smaller lr or max_batch_size")
                    self._event("diverged", message, epoch)
                    break
                self._handle_controls(epoch, epoch_end=True)
                # after on_epoch, so a killed run resumes at or before its last stored record
                self._save_checkpoint(epoch)
                yield record
                if epoch < self.config.epochs:
                    yield from self._waits_between_epochs(epoch, epoch_started)
                if self.stop_requested:
                    status, message = "stopped", f"stopped after epoch {epoch}"
                    break
        finally:
            self.meter.detach()
            self.dist.close()
        self.result = RunResult(status, self.records, message, self.problem.n_train,
                                self.meter.approximate, self.events, self.initial)

    def _save_checkpoint(self, epoch: int) -> None:
        """Rewrite the run's checkpoint after `epoch` (0: the start, only when it is kept),
        and keep a copy where `config.kept_checkpoint_epochs()` names the epoch."""
        if not (self.checkpoint_path and self.dist.is_main):
            return
        kept = epoch in self.config.kept_checkpoint_epochs()
        if epoch > 0 or kept:
            checkpoint.save(self.checkpoint_path, self.state_dict())
        if kept:
            checkpoint.keep(self.checkpoint_path, epoch)

    def state_dict(self) -> dict:
        """Everything needed to continue this run exactly after its last finished epoch, as
        tensors and plain python values (what `torch.load(weights_only=True)` reads back).
        The diversity meter has no state to keep: it is reset before every measured epoch."""
        return {"epoch": self.epochs_done, "config": self.config.to_dict(),
                "lr_multiplier": self.lr_multiplier,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "lr_schedule": self.lr_schedule.state_dict() if self.lr_schedule else None,
                "step": self.step, "samples_seen": self.samples_seen,
                "wall_time": time.perf_counter() - self.started,
                "records": [record.to_dict() for record in self.records],
                "initial": self.initial, "events": list(self.events), "rng": self._rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (of a run with this config, hot fields aside): the next
        epoch is state["epoch"] + 1."""
        saved = RunConfig.from_dict(state["config"])
        changed = sorted(k for k, v in saved.to_dict().items()
                         if k not in HOT_FIELDS and v != getattr(self.config, k))
        if changed:
            raise ValueError(f"the checkpoint belongs to another config: it differs in "
                             f"{', '.join(changed)}")
        self.config = saved
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.lr_schedule is not None:
            self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.lr_multiplier = state["lr_multiplier"]
        self.epochs_done, self.step = state["epoch"], state["step"]
        self.samples_seen = state["samples_seen"]
        self.started = time.perf_counter() - state["wall_time"]
        self.records = [EpochRecord(**record) for record in state["records"]]
        self.initial = state.get("initial")  # checkpoints before it was measured lack it
        self.events = list(state["events"])
        self._set_rng_state(state["rng"])

    def _rng_state(self) -> dict:
        return {"shuffle": self.shuffle.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "problem": self.problem.rng.get_state() if self.problem.rng else None}

    def _set_rng_state(self, rng: dict) -> None:
        self.shuffle.set_state(rng["shuffle"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if self.problem.rng is not None and rng["problem"] is not None:
            self.problem.rng.set_state(rng["problem"])

    def _out_of_memory_message(self, epoch: int) -> str:
        return (f"out of memory in epoch {epoch} at batch size {self.scheduler.batch_size}; "
                f"start a new run with a smaller max_batch_size (now "
                f"{self._hot_values()['max_batch_size']}) or batch_size")

    def _run_epoch(self, epoch: int) -> EpochRecord | None:
        batch_size = self.scheduler.batch_size
        lr = self.optimizer.param_groups[0]["lr"]
        measure = self._measures(epoch)
        if measure:
            self.meter.reset()
        loss_sum, n_batches, train_time = self._train_epoch(epoch, batch_size, measure)
        if loss_sum is None:
            return None
        diversity = self.meter.diversity() if measure else None
        hot = self._hot_values()
        measured_batches = self.meter.measured_batches if measure else 0
        next_batch = self._advance_schedules(epoch, diversity)
        probe_diversity, instrument_time = self._probe(batch_size)
        val_loss, val_acc = self.evaluate()
        return EpochRecord(
            epoch=epoch, step=self.step, samples_seen=self.samples_seen,
            train_time=train_time, wall_time=time.perf_counter() - self.started,
            batch_size=batch_size, lr=lr, diversity=diversity,
            train_loss=loss_sum / self.problem.n_train, val_loss=val_loss, val_acc=val_acc,
            next_batch_size=next_batch, **hot,
            step_ms=1000.0 * train_time / max(n_batches, 1),
            measured_batches=measured_batches, probe_diversity=probe_diversity,
            instrument_time=instrument_time, measure_time=self.meter.seconds if measure else 0.0)

    def _measures(self, epoch: int) -> bool:
        return self.scheduler.measures_diversity(epoch)

    def _train_epoch(self, epoch: int, batch_size: int, measure: bool):
        """One pass over a fresh shuffle; returns (loss sum, batches, seconds) or Nones."""
        problem, n = self.problem, self.problem.n_train
        order = to_device(torch.randperm(n, generator=self.shuffle), self.device)
        n_batches = math.ceil(n / batch_size)
        self.model.train()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        started = time.perf_counter()
        for index in range(n_batches):
            batch = order[index * batch_size:(index + 1) * batch_size]  # (B,)
            loss_sum += self._train_step(problem.x_train[batch], problem.y_train[batch],
                                         measure)
            self.step += 1
            self.samples_seen += len(batch)
            if self._poll_due():
                self._report_progress(epoch, index + 1, n_batches, started)
                self._handle_controls(epoch, epoch_end=False)
                if self.stop_requested:
                    return None, 0, 0.0
        loss_total = float(self.dist.all_sum(loss_sum))  # the epoch's one host sync
        return loss_total, n_batches, time.perf_counter() - started

    def _train_step(self, x_raw: torch.Tensor, y: torch.Tensor, measure: bool) -> torch.Tensor:
        """One SGD step on a global batch; returns this process's sum of losses."""
        batch_size = len(y)
        # the whole batch is prepared (augmented) as in one process, then this rank's share
        inputs = self.dist.shard(self.problem.inputs(x_raw, training=True))
        y = self.dist.shard(y)
        self.optimizer.zero_grad()
        model = self._forward_model(measure)
        if measure:
            with self.meter.track(batch_size, samples=len(y)):
                loss_sum = self._backward(model, inputs, y, batch_size)
        else:
            loss_sum = self._backward(model, inputs, y, batch_size)
        self.optimizer.step()
        return loss_sum

    def _forward_model(self, measure: bool) -> nn.Module:
        """The eager model where the meter's hooks measure this batch (its next ``track``),
        else the plain (possibly compiled) one."""
        hooked = measure and self.meter.seen_batches % self.meter.sample_every == 0
        return self.model if hooked else self.plain_model

    def _backward(self, model, inputs: torch.Tensor, y: torch.Tensor,
                  batch_size: int) -> torch.Tensor:
        """Gradient of the global batch's mean loss, sum(losses) / batch_size, accumulated
        over micro-batches of at most max_micro_batch samples (summed over ranks by DDP)."""
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        for part in self.dist.micro_batches(len(y), self.config.max_micro_batch):
            outputs = self._outputs(lambda x: self.dist.forward(model, x), inputs[part])
            losses = self.loss_fn(outputs, y[part])  # (b,)
            (losses.sum() / batch_size).backward()
            loss_sum += losses.detach().sum()  # accumulated in float64
        return loss_sum

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float | None]:
        problem = self.problem
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.float64)
        for start in range(0, len(problem.y_val), EVAL_CHUNK):
            x = problem.inputs(problem.x_val[start:start + EVAL_CHUNK], training=False)
            y = problem.y_val[start:start + EVAL_CHUNK]
            outputs = self._outputs(self.model, x)
            loss_sum += self.loss_fn(outputs, y).double().sum()
            hits = correct_predictions(problem.task, outputs, y)
            if hits is not None:
                correct += hits
        n_val = len(problem.y_val)
        accuracy = None if problem.task == "regression" else float(correct) / n_val
        return float(loss_sum) / n_val, accuracy

    def _advance_schedules(self, epoch: int, diversity: float | None) -> int:
        old_batch = self.scheduler.batch_size
        resizing = self.scheduler.measures_diversity(epoch)
        next_batch = self.scheduler.step(diversity if resizing else None)
        if self.lr_schedule is not None:
            self.lr_schedule.step()
        if next_batch != old_batch:
            self._event("batch_size", f"batch size {old_batch} -> {next_batch}", epoch,
                        {"old": old_batch, "new": next_batch})
        return next_batch

    def _hot_values(self) -> dict:
        return {"delta": getattr(self.scheduler, "delta", None),
                "max_batch_size": getattr(self.scheduler, "max_batch_size",
                                          self.scheduler.batch_size),
                "resize_every": getattr(self.scheduler, "resize_every", 1),
                "lr_multiplier": self.lr_multiplier}

    def _poll_due(self) -> bool:
        if self.dist.world_size > 1:  # every rank must poll at the same step
            return self.dist.poll_due(self.step, self.config.progress_every)
        now = time.perf_counter()
        if now - self._last_poll < self.config.progress_every:
            return False
        self._last_poll = now
        return True

    def _report_progress(self, epoch: int, batch: int, n_batches: int, started: float):
        if self.on_progress:
            self.on_progress({"epoch": epoch, "batch": batch, "n_batches": n_batches,
                              "samples_seen": self.samples_seen, "step": self.step,
                              "epoch_seconds": time.perf_counter() - started})

    def _event(self, kind: str, message: str, epoch: int | None, payload=None) -> None:
        event = {"kind": kind, "message": message, "epoch": epoch, "payload": payload}
        self.events.append(event)
        if self.on_event:
            self.on_event(event)


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


def train(config: RunConfig, on_epoch: Callable[[EpochRecord], None] | None = None,
          control=None, *, on_progress: Callable[[dict], None] | None = None,
          on_event: Callable[[dict], None] | None = None,
          on_start: Callable[[dict], None] | None = None,
          checkpoint_path: str | os.PathLike | None = None,
          resume_from: str | os.PathLike | dict | None = None) -> RunResult:
    """Run one experiment described by `config`; see EpochRecord for what each epoch emits.

    `control.poll()` is read between steps (rate-limited) and at every epoch end: a `stop`
    message ends the run as "stopped"; a `set` message changes hot parameters.
    A NaN or infinite training loss ends the run as "diverged", keeping the records so far;
    running out of memory ends it as "failed" with a message suggesting a smaller batch.
    `on_start(facts)` gets Trainer.info() at the start, then {"initial": point}: the chart's
    epoch 0, measured before training when the probe is on (diversity_every_epoch).
    `checkpoint_path`: a file (see `divebatch.training.checkpoint`) rewritten atomically at the
    end of every epoch. `resume_from`: such a file, or a `Trainer.state_dict()`, to continue
    after its epoch; the records then equal an uninterrupted run's (timings aside) on the same
    device.
    """
    return Trainer(config, on_epoch, control, on_progress, on_event, on_start,
                   checkpoint_path, resume_from).run()
