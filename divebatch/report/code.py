"""The library code behind what a page shows, as source text ("Show the code")."""

from __future__ import annotations

import inspect

from divebatch.meter.diversity import DiversityMeter
from divebatch.schedulers import AdaBatch, BatchSizeScheduler, DiveBatch, FixedBatch

# Where each method's batch-size decision is made.
DECISION_CODE = {
    "divebatch": (DiveBatch._next_batch_size, BatchSizeScheduler.step,
                  DiversityMeter.track, DiversityMeter.diversity),
    "adabatch": (AdaBatch._next_batch_size, AdaBatch._lr_factor, BatchSizeScheduler.step),
    "sgd": (FixedBatch._next_batch_size, BatchSizeScheduler.step),
}


def sources(functions) -> dict[str, str]:
    """{"divebatch/module.py · Class.function": its source} for each function, in order."""
    return {f"{inspect.getmodule(function).__name__.replace('.', '/')}.py · "
            f"{function.__qualname__}": inspect.getsource(function) for function in functions}


def decision_sources(method: str) -> dict[str, str]:
    """The functions that pick the next batch size for `method` (sgd, adabatch, divebatch)."""
    return sources(DECISION_CODE[method])
