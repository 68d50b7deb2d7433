"""The epoch loop: SGD, a base LR schedule, a batch-size scheduler, diversity and records.

>>> result = train(RunConfig(problem="least_squares", n_samples=400, dim=8, epochs=2))
>>> [r.epoch for r in result.records], result.status
([1, 2], 'completed')
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, Iterator

import torch
from torch import nn

from divebatch.config import HOT_FIELDS, RunConfig
from divebatch.data.problem import Problem, correct_predictions, per_sample_loss
from divebatch.data.problems import load_problem
from divebatch.device_options import (make_optimizer, out_of_memory, plain_forward_model,
                                      resolve_device, to_device)
from divebatch.meter.diversity import DiversityMeter
from divebatch.models.registry import build_model
from divebatch.training import checkpoint
from divebatch.training.controls import RunControls, Wait, scale_learning_rates
from divebatch.training.distributed import Distributed
from divebatch.training.instruments import ChartInstruments
from divebatch.training.records import TIMING_FIELDS, EpochRecord, RunResult
from divebatch.training.schedules import make_lr_schedule, make_scheduler

__all__ = ["EpochRecord", "RunResult", "TIMING_FIELDS", "Trainer", "train"]

EVAL_CHUNK = 4096  # validation samples per forward pass


class Trainer:
    """One run's state; `train()` below is the public entry point. It owns its `controls`
    (what control messages ask: stop, pause, pace, hot changes) and its `instruments` (what
    the charts alone measure, outside training time): handed in, or made fresh."""

    def __init__(self, config: RunConfig, on_epoch=None, control=None, on_progress=None,
                 on_event=None, on_start=None, checkpoint_path=None, resume_from=None, *,
                 controls: RunControls | None = None,
                 instruments: ChartInstruments | None = None):
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
                                    reduce=self.dist.all_sum, keep_hooks=True,
                                    fuse_weight_grads=self.dist.world_size == 1,
                                    **({"sample_every": config.measure_every}
                                       if config.measure_every else {}))
        self.controls = controls if controls is not None else RunControls()
        self.instruments = instruments if instruments is not None else ChartInstruments()
        self.instruments.attach(self)
        self.shuffle = torch.Generator().manual_seed(config.seed + 1)
        self.records: list[EpochRecord] = []
        self.events: list[dict] = []
        self.step = self.samples_seen = 0
        self.epochs_done = 0
        self.checkpoint_path = checkpoint_path  # written at the end of every epoch if set
        self.result: RunResult | None = None  # set when epochs() ends
        self.started = time.perf_counter()
        scale_learning_rates(self.optimizer, config.lr_multiplier)
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

    def outputs(self, forward, inputs: torch.Tensor) -> torch.Tensor:
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
            if self.epochs_done == 0 and self.instruments.probe is not None:
                yield from self.instruments.initial_point(self)
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
                    self.event("out_of_memory", message, epoch)
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
                    self.event("diverged", message, epoch)
                    break
                self.controls.handle(self, epoch)
                # after on_epoch, so a killed run resumes at or before its last stored record
                self._save_checkpoint(epoch)
                yield record
                if epoch < self.config.epochs:
                    yield from self.controls.waits_between_epochs(self, epoch, epoch_started)
                if self.controls.stop_requested:
                    status, message = "stopped", f"stopped after epoch {epoch}"
                    break
        finally:
            self.meter.detach()
            self.dist.close()
        self.result = RunResult(status, self.records, message, self.problem.n_train,
                                self.meter.approximate, self.events, self.instruments.initial)

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
                "lr_multiplier": self.config.lr_multiplier,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "lr_schedule": self.lr_schedule.state_dict() if self.lr_schedule else None,
                "step": self.step, "samples_seen": self.samples_seen,
                "wall_time": time.perf_counter() - self.started,
                "records": [record.to_dict() for record in self.records],
                "initial": self.instruments.initial, "events": list(self.events),
                "rng": self._rng_state()}

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
        self.epochs_done, self.step = state["epoch"], state["step"]
        self.samples_seen = state["samples_seen"]
        self.started = time.perf_counter() - state["wall_time"]
        self.records = [EpochRecord(**record) for record in state["records"]]
        self.instruments.initial = state.get("initial")  # older checkpoints lack it
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
                f"{self.hot_values()['max_batch_size']}) or batch_size")

    def _run_epoch(self, epoch: int) -> EpochRecord | None:
        batch_size = self.scheduler.batch_size
        lr = self.optimizer.param_groups[0]["lr"]
        measure = self.scheduler.measures_diversity(epoch)
        if measure:
            self.meter.reset()
        loss_sum, n_batches, train_time = self.train_pass(epoch, batch_size, measure)
        self.meter.detach()  # keep_hooks: between measured batches, not beyond the pass
        if loss_sum is None:
            return None
        diversity = self.meter.diversity() if measure else None
        hot = self.hot_values()
        measured_batches = self.meter.measured_batches if measure else 0
        next_batch = self._advance_schedules(epoch, diversity)
        probe_diversity, instrument_time = self.instruments.measure(self, batch_size)
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

    def train_pass(self, epoch: int, batch_size: int, measure: bool = False):
        """Epoch `epoch`'s pass over a fresh shuffle at `batch_size` (diversity measured if
        `measure`), training alone: no evaluation, no schedule step, no record. Returns (loss
        sum, batches, seconds), or Nones when a stop arrived during the pass."""
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
            if self.controls.poll_due(self):
                self._report_progress(epoch, index + 1, n_batches, started)
                self.controls.handle(self, epoch)
                if self.controls.stop_requested:
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
            outputs = self.outputs(lambda x: self.dist.forward(model, x), inputs[part])
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
            outputs = self.outputs(self.model, x)
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
            self.event("batch_size", f"batch size {old_batch} -> {next_batch}", epoch,
                        {"old": old_batch, "new": next_batch})
        return next_batch

    def hot_values(self) -> dict:
        """The hot parameters in force (config.HOT_FIELDS), as the scheduler applies them."""
        return {"delta": getattr(self.scheduler, "delta", None),
                "max_batch_size": getattr(self.scheduler, "max_batch_size",
                                          self.scheduler.batch_size),
                "resize_every": getattr(self.scheduler, "resize_every", 1),
                "lr_multiplier": self.config.lr_multiplier}

    def _report_progress(self, epoch: int, batch: int, n_batches: int, started: float):
        if self.on_progress:
            self.on_progress({"epoch": epoch, "batch": batch, "n_batches": n_batches,
                              "samples_seen": self.samples_seen, "step": self.step,
                              "epoch_seconds": time.perf_counter() - started})

    def event(self, kind: str, message: str, epoch: int | None, payload=None) -> None:
        """Log what happened to the run (kept in the checkpoint and the result; on_event)."""
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
    `checkpoint_path`: a file (see `divebatch.training.checkpoint`) rewritten atomically after
    every epoch and left when the run ends, with copies at `config.kept_checkpoint_epochs()`
    (run.pt: run-epoch-0.pt, ...). `resume_from`: such a file, or a `Trainer.state_dict()`, to
    continue after its epoch; records then equal an uninterrupted run's (timings aside; one device).
    """
    return Trainer(config, on_epoch, control, on_progress, on_event, on_start,
                   checkpoint_path, resume_from).run()
