"""What a run emits: one `EpochRecord` per epoch, and its `RunResult` at the end."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
    initial: dict | None = None   # the charts' epoch 0 (ChartInstruments.initial)
