"""A run's controls between steps: the in-memory control channel, stop / pause / step / pace
requests, hot parameter changes and the waits between epochs.

`RunControls` is an object a `Trainer` owns (`trainer.controls`). Each method is handed the
trainer it acts for: it reads the trainer's control channel (`control`) and changes the run
through the trainer's public attributes (config, scheduler, optimizer) and `event()`; every
change is checked by `config.check_hot_change`. It never sleeps: while pace or pause holds a
run between epochs, `waits_between_epochs` yields a `Wait` per poll and the caller decides
what to do meanwhile (sleep, or train another run: see interleave.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch

from divebatch.config import PACE_FIELDS, check_hot_change

WAIT_POLL_S = 0.1  # control polls while waiting between epochs (pace, pause)


@dataclass(frozen=True)
class Wait:
    """The run waits between epochs (pace or pause): poll it again after `seconds`."""
    seconds: float


class LocalControl:
    """In-memory control channel: `stop()`, `set(**hot)`, `pause()`, `resume()`, `step()`
    (one more epoch, then paused) and `pace(seconds)` from another thread."""

    def __init__(self):
        self._pending: list[dict] = []

    def stop(self) -> None:
        self._pending.append({"kind": "stop"})

    def set(self, **hot) -> None:
        self._pending.append({"kind": "set", "payload": hot})

    def pause(self) -> None:
        self._pending.append({"kind": "pause"})

    def resume(self) -> None:
        self._pending.append({"kind": "resume"})

    def step(self) -> None:
        self._pending.append({"kind": "step"})

    def pace(self, pace_s: float) -> None:
        self._pending.append({"kind": "pace", "payload": {"pace_s": pace_s}})

    def poll(self) -> list[dict]:
        pending, self._pending = self._pending, []
        return pending


class RunControls:
    """What a run's control messages ask, and its pause state between epochs."""

    def __init__(self, wait_poll_s: float = WAIT_POLL_S):
        self.wait_poll_s = wait_poll_s  # seconds between polls while the run waits
        self.stop_requested = False
        self.paused = False  # waiting after an epoch until resume, step or stop
        self.pause_requested = False  # pause at the next epoch boundary (or now, if at one)
        self.pause_after_epoch = False  # "step" while paused: one more epoch, then pause
        self._last_poll = 0.0

    def poll_due(self, run) -> bool:
        """Whether to poll the controls (and report progress) after this step: at most every
        `config.progress_every` seconds, at the same step on every rank."""
        if run.dist.world_size > 1:  # every rank must poll at the same step
            return run.dist.poll_due(run.step, run.config.progress_every)
        now = time.perf_counter()
        if now - self._last_poll < run.config.progress_every:
            return False
        self._last_poll = now
        return True

    def handle(self, run, epoch: int) -> None:
        """Act on every message waiting on the run's control channel."""
        if run.control is None:
            return
        for message in run.control.poll():
            kind = message.get("kind")
            if kind == "stop":
                self.stop_requested = True
            elif kind == "set":
                self.apply_hot_changes(run, message.get("payload") or {}, epoch)
            elif kind == "resume":
                self.paused = self.pause_requested = self.pause_after_epoch = False
            elif kind == "step" and self.paused:
                self.paused, self.pause_after_epoch = False, True
            elif kind in ("pause", "step"):  # a step while running pauses at the boundary
                self.pause_requested = True
            elif kind == "pace":
                self._set_pace(run, (message.get("payload") or {}).get("pace_s"), epoch)

    def _set_pace(self, run, pace_s, epoch: int) -> None:
        try:
            run.config = check_hot_change(run.config, {"pace_s": pace_s}, PACE_FIELDS)
        except (ValueError, TypeError) as error:
            run.event("rejected", str(error).splitlines()[0], epoch, {"pace_s": pace_s})
            return
        run.event("pace", f"pace: each epoch lasts at least {pace_s:g} s" if pace_s
                  else "pace: real time", epoch, {"pace_s": pace_s})

    def waits_between_epochs(self, run, epoch: int,
                             epoch_started: float) -> Iterator[Wait]:
        """Classroom pace and pause: one `Wait` per control poll until the epoch has lasted
        `pace_s` seconds and the run is not paused (or a stop arrives). Waiting happens
        outside every timed span, so it is never training time. Runs on one process only
        (ranks would have to wait in step)."""
        if run.dist.world_size > 1:
            return
        if self.pause_after_epoch:
            self.pause_requested, self.pause_after_epoch = True, False
        was_paused = False
        while not self.stop_requested:
            if self.pause_requested:
                self.paused, self.pause_requested = True, False
            if self.paused != was_paused:
                _pause_state(run, epoch, self.paused)
                was_paused = self.paused
            remaining = run.config.pace_s - (time.perf_counter() - epoch_started)
            if not self.paused and remaining <= 0:
                return
            yield Wait(self.wait_poll_s if self.paused else min(self.wait_poll_s, remaining))
            self.handle(run, epoch)

    def apply_hot_changes(self, run, changes: dict, epoch: int) -> None:
        """Apply delta / max_batch_size / resize_every / lr_multiplier between steps; the
        batch size itself only changes at the next epoch boundary."""
        try:
            checked = check_hot_change(run.config, changes)
            scheduler_changes = {k: v for k, v in changes.items()
                                 if k != "lr_multiplier" and hasattr(run.scheduler, k)}
            if scheduler_changes:
                run.scheduler.update(**scheduler_changes)
        except ValueError as error:
            run.event("rejected", str(error).splitlines()[0], epoch, changes)
            return
        if "lr_multiplier" in changes:
            scale_learning_rates(run.optimizer,
                                 changes["lr_multiplier"] / run.config.lr_multiplier)
        run.config = checked
        summary = ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))
        run.event("hot_change", f"changed {summary}", epoch, changes)


def _pause_state(run, epoch: int, paused: bool) -> None:
    """Tell the store (progress row and event) that the run paused or resumed."""
    if run.on_progress:
        run.on_progress({"epoch": epoch, "paused": paused})
    run.event("paused" if paused else "resumed",
              f"paused after epoch {epoch}" if paused else f"resumed after epoch {epoch}", epoch)


def scale_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Multiply every param group's learning rate by `factor` (the hot LR multiplier's
    change), composing with the base schedule and the batch-size rule."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
