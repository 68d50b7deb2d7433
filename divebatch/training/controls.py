"""A run's controls between steps: the in-memory control channel, stop / pause / step / pace
requests, hot parameter changes and the waits between epochs.

`RunControls` is part of `Trainer` (a mixin): it reads the trainer's control channel and
changes its config, scheduler and optimizer. It never sleeps: while pace or pause holds a run
between epochs, `_waits_between_epochs` yields a `Wait` per poll and the caller decides what
to do meanwhile (sleep, or train another run: see interleave.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from divebatch.config import HOT_FIELDS

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
    """Control handling of a `Trainer`, which provides control, config, scheduler, optimizer,
    dist, on_progress and _event."""

    stop_requested = False
    paused = False  # waiting after an epoch until resume, step or stop
    pause_requested = False  # pause at the next epoch boundary (or now, if at one)
    pause_after_epoch = False  # "step" while paused: one more epoch, then pause

    def _handle_controls(self, epoch: int, epoch_end: bool) -> None:
        if self.control is None:
            return
        for message in self.control.poll():
            kind = message.get("kind")
            if kind == "stop":
                self.stop_requested = True
            elif kind == "set":
                self.apply_hot_changes(message.get("payload") or {}, epoch)
            elif kind == "resume":
                self.paused = self.pause_requested = self.pause_after_epoch = False
            elif kind == "step" and self.paused:
                self.paused, self.pause_after_epoch = False, True
            elif kind in ("pause", "step"):  # a step while running pauses at the boundary
                self.pause_requested = True
            elif kind == "pace":
                self._set_pace((message.get("payload") or {}).get("pace_s"), epoch)

    def _set_pace(self, pace_s, epoch: int) -> None:
        try:
            self.config.replace(pace_s=pace_s).validate()
        except (ValueError, TypeError) as error:
            self._event("rejected", str(error).splitlines()[0], epoch, {"pace_s": pace_s})
            return
        self.config = self.config.replace(pace_s=pace_s)
        self._event("pace", f"pace: each epoch lasts at least {pace_s:g} s" if pace_s
                    else "pace: real time", epoch, {"pace_s": pace_s})

    def _waits_between_epochs(self, epoch: int, epoch_started: float) -> Iterator[Wait]:
        """Classroom pace and pause: one `Wait` per control poll until the epoch has lasted
        `pace_s` seconds and the run is not paused (or a stop arrives). Waiting happens
        outside every timed span, so it is never training time. Runs on one process only
        (ranks would have to wait in step)."""
        if self.dist.world_size > 1:
            return
        if self.pause_after_epoch:
            self.pause_requested, self.pause_after_epoch = True, False
        was_paused = False
        while not self.stop_requested:
            if self.pause_requested:
                self.paused, self.pause_requested = True, False
            if self.paused != was_paused:
                self._pause_state(epoch, self.paused)
                was_paused = self.paused
            remaining = self.config.pace_s - (time.perf_counter() - epoch_started)
            if not self.paused and remaining <= 0:
                return
            yield Wait(WAIT_POLL_S if self.paused else min(WAIT_POLL_S, remaining))
            self._handle_controls(epoch, epoch_end=True)

    def _pause_state(self, epoch: int, paused: bool) -> None:
        """Tell the store (progress row and event) that the run paused or resumed."""
        if self.on_progress:
            self.on_progress({"epoch": epoch, "paused": paused})
        self._event("paused" if paused else "resumed",
                    f"paused after epoch {epoch}" if paused else f"resumed after epoch {epoch}",
                    epoch)

    def apply_hot_changes(self, changes: dict, epoch: int) -> None:
        """Apply delta / max_batch_size / resize_every / lr_multiplier between steps; the
        batch size itself only changes at the next epoch boundary."""
        unknown = sorted(set(changes) - set(HOT_FIELDS))
        if unknown:
            self._event("rejected", f"not a hot parameter: {', '.join(unknown)}", epoch)
            return
        checked = self.config.replace(**changes)
        try:
            checked.validate()
            scheduler_changes = {k: v for k, v in changes.items()
                                 if k != "lr_multiplier" and hasattr(self.scheduler, k)}
            if scheduler_changes:
                self.scheduler.update(**scheduler_changes)
        except ValueError as error:
            self._event("rejected", str(error).splitlines()[0], epoch, changes)
            return
        if "lr_multiplier" in changes:
            self._apply_lr_multiplier(self.lr_multiplier, changes["lr_multiplier"])
            self.lr_multiplier = changes["lr_multiplier"]
        self.config = checked
        summary = ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))
        self._event("hot_change", f"changed {summary}", epoch, changes)

    def _apply_lr_multiplier(self, old: float, new: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] *= new / old
