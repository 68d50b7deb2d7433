"""Several runs in one process, taking turns an epoch at a time, so all their curves grow
together (a race on one worker slot).

>>> from divebatch.config import RunConfig
>>> from divebatch.training.trainer import Trainer
>>> tiny = RunConfig(problem="least_squares", n_samples=64, dim=4, epochs=2)
>>> order = []
>>> trainers = [Trainer(tiny.replace(method=method), on_epoch=lambda r, m=method:
...                     order.append((m, r.epoch))) for method in ("sgd", "adabatch")]
>>> [result.status for result in interleave(trainers)], order
(['completed', 'completed'], [('sgd', 1), ('adabatch', 1), ('sgd', 2), ('adabatch', 2)])

Each run goes through its own `Trainer.epochs()`: in every round each run that is ready trains
its next epoch, in the order given; a run held by pace or pause yields a `Wait` and lets the
others go, and when all wait the process sleeps until the first is due. A run that ends
(completed, stopped, diverged, or an exception) leaves the rotation; the others go on. Each
run still polls its own control channel, and its train_time counts only its own epochs.

Runs can share a process because training draws random numbers only from each run's own
generators (shuffle, augmentation, probe), never from torch's global one.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from divebatch.training.controls import Wait
from divebatch.training.records import RunResult
from divebatch.training.trainer import Trainer

Outcome = RunResult | Exception  # how a run ended: its result, or the error that ended it


class _Turn:
    """One run's place in the rotation."""

    def __init__(self, index: int, trainer: Trainer):
        self.index, self.trainer = index, trainer
        self.pieces = trainer.epochs()
        self.ready_at = 0.0  # perf_counter time of its next poll while it waits
        self.outcome: Outcome | None = None

    def advance(self) -> bool:
        """Train the next epoch (or poll the wait): True while the run goes on, False once
        it has ended (`outcome` set)."""
        try:
            piece = next(self.pieces)
        except StopIteration:
            self.outcome = self.trainer.result
            return False
        except Exception as error:  # noqa: BLE001 - one run's failure ends only that run
            self.outcome = error
            return False
        if isinstance(piece, Wait):
            self.ready_at = time.perf_counter() + piece.seconds
        return True


def interleave(trainers: Sequence[Trainer],
               on_end: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
    """Train `trainers` round-robin, one epoch each in turn, until every run has ended;
    `on_end(index, outcome)` is called as each one ends. Returns the outcomes in order."""
    turns = [_Turn(index, trainer) for index, trainer in enumerate(trainers)]
    outcomes: list[Outcome | None] = [None] * len(turns)
    try:
        while turns:
            _sleep_until_one_is_ready(turns)
            for turn in [t for t in turns if t.ready_at <= time.perf_counter()]:
                if turn.advance():
                    continue
                turns.remove(turn)
                outcomes[turn.index] = turn.outcome
                if on_end:
                    on_end(turn.index, turn.outcome)
    finally:
        for turn in turns:  # left early (an error in on_end, a signal): end them cleanly
            turn.pieces.close()
    return outcomes


def _sleep_until_one_is_ready(turns: list[_Turn]) -> None:
    due = min(turn.ready_at for turn in turns) - time.perf_counter()
    if due > 0:
        time.sleep(due)
