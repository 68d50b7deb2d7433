"""What a run measures for the charts alone, outside its timed training: the fixed probe's
diversity after each epoch (divebatch.training.probe) and the starting point before epoch 1.
A mixin of `Trainer`, which provides probe, probe_small, initial, config, scheduler,
optimizer, on_start, evaluate and _hot_values.
"""

from __future__ import annotations

import time
from typing import Iterator

from divebatch.training.controls import Wait
from divebatch.device_options import out_of_memory


class ChartInstruments:
    def _initial_point(self) -> Iterator[Wait]:
        """The model as initialised, measured as an epoch's end is, before training starts:
        the charts' epoch 0, so a run shows a point long before its first epoch ends.
        Validation first (milliseconds), then the probe's diversity (the slow part); each is
        reported as on_start's {"initial": ...} as soon as it is known, and each is followed
        by a Wait, so that in a race every run's point comes before any run trains. Like the
        probe, it draws no random number training uses."""
        started = time.perf_counter()
        val_loss, val_acc = self.evaluate()
        self.initial = {"epoch": 0, "step": 0, "samples_seen": 0, "train_time": 0.0,
                        "batch_size": self.scheduler.batch_size,
                        "lr": self.optimizer.param_groups[0]["lr"], "probe_diversity": None,
                        "val_loss": val_loss, "val_acc": val_acc, **self._hot_values()}
        yield self._report_initial(started)
        self.initial["probe_diversity"], _ = self._probe(self.scheduler.batch_size)
        yield self._report_initial(started)

    def _report_initial(self, started: float) -> Wait:
        self.initial["instrument_time"] = time.perf_counter() - started
        if self.on_start:
            self.on_start({"initial": dict(self.initial)})
        return Wait(0.0)

    def _probe(self, batch_size: int) -> tuple[float | None, float]:
        """(chart-only diversity, seconds it took), outside the timed loop, in passes as large
        as the run's largest batch (B_max, or the micro-batch cap if set): at B0 = 16 the
        digits CNN's probe took longer than its epoch in passes of 16. If that runs out of
        memory, passes no larger than the epoch's own from then on, which training needs
        anyway."""
        if self.probe is None:
            return None, 0.0
        started = time.perf_counter()
        cap = self.config.max_micro_batch or max(batch_size, self.config.max_batch_size)
        if not self.probe_small:
            try:
                return self.probe.measure(cap), time.perf_counter() - started
            except RuntimeError as error:  # torch.OutOfMemoryError is one
                if not out_of_memory(error):
                    raise
                self.probe_small = True
        value = self.probe.measure(min(batch_size, cap))
        return value, time.perf_counter() - started
