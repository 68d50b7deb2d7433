"""What a run measures for the charts alone, outside its timed training: the fixed probe's
diversity after each epoch (divebatch.training.probe) and the starting point before epoch 1.

`ChartInstruments` is an object a `Trainer` owns (`trainer.instruments`). `attach(run)` builds
the probe on the trainer's model when its config asks for one (`diversity_every_epoch`); each
other method is handed the trainer it measures and reads only its public attributes.
"""

from __future__ import annotations

import time
from typing import Iterator

from divebatch.device_options import out_of_memory
from divebatch.training.controls import Wait
from divebatch.training.probe import DiversityProbe


class ChartInstruments:
    def __init__(self):
        self.probe: DiversityProbe | None = None  # None: the run charts no probe diversity
        self.small_passes = False  # the probe's passes as small as the epoch's batch
        self.initial: dict | None = None  # the charts' epoch 0, measured before epoch 1

    def attach(self, run) -> None:
        """Build the probe on `run`'s model when its config charts every method's diversity."""
        config = run.config
        if config.diversity_every_epoch:
            self.probe = DiversityProbe(run.model, run.problem, run.loss_fn, run.dist,
                                        run.outputs, config.seed + 2,
                                        allow_batchnorm=config.norm == "batch")

    def initial_point(self, run) -> Iterator[Wait]:
        """The model as initialised, measured as an epoch's end is, before training starts:
        the charts' epoch 0, so a run shows a point long before its first epoch ends.
        Validation first (milliseconds), then the probe's diversity (the slow part); each is
        reported as on_start's {"initial": ...} as soon as it is known, and each is followed
        by a Wait, so that in a race every run's point comes before any run trains. Like the
        probe, it draws no random number training uses."""
        started = time.perf_counter()
        val_loss, val_acc = run.evaluate()
        self.initial = {"epoch": 0, "step": 0, "samples_seen": 0, "train_time": 0.0,
                        "batch_size": run.scheduler.batch_size,
                        "lr": run.optimizer.param_groups[0]["lr"], "probe_diversity": None,
                        "val_loss": val_loss, "val_acc": val_acc, **run.hot_values()}
        yield self._report_initial(run, started)
        self.initial["probe_diversity"], _ = self.measure(run, run.scheduler.batch_size)
        yield self._report_initial(run, started)

    def _report_initial(self, run, started: float) -> Wait:
        self.initial["instrument_time"] = time.perf_counter() - started
        if run.on_start:
            run.on_start({"initial": dict(self.initial)})
        return Wait(0.0)

    def measure(self, run, batch_size: int) -> tuple[float | None, float]:
        """(chart-only diversity, seconds it took), outside the timed loop, in passes as large
        as the run's largest batch (B_max, or the micro-batch cap if set): at B0 = 16 the
        digits CNN's probe took longer than its epoch in passes of 16. If that runs out of
        memory, passes no larger than the epoch's own from then on, which training needs
        anyway."""
        if self.probe is None:
            return None, 0.0
        started = time.perf_counter()
        cap = run.config.max_micro_batch or max(batch_size, run.config.max_batch_size)
        if not self.small_passes:
            try:
                return self.probe.measure(cap), time.perf_counter() - started
            except RuntimeError as error:  # torch.OutOfMemoryError is one
                if not out_of_memory(error):
                    raise
                self.small_passes = True
        value = self.probe.measure(min(batch_size, cap))
        return value, time.perf_counter() - started
