"""Hold a Start click's page update until the new runs have a point to draw.

After a click Streamlit reruns the page once, and the browser redraws all of it. When the
first points arrive only with a later update, the browser redraws it all again, and on a
2-core machine where a worker trains, those two redraws were most of the wait (digits:
click to first point 3.2 s, 1.7 s when the charts come with the click's update;
benchmarks/dashboard.py --start). A warm worker claims a run in about 0.1 s and measures its
starting point (ChartInstruments.initial) in milliseconds, so waiting a moment for it pays.
"""

from __future__ import annotations

import time

from divebatch.runs.store import RunStore

HOLD_S = 1.0        # the click's update waits at most this long for the first points ...
CLAIM_WAIT_S = 0.3  # ... and no longer than this for a trainer to start on each run
POLL_S = 0.02


def await_first_points(store: RunStore, run_ids: list[int]) -> bool:
    """Wait until each run has a point (its measured start or an epoch) or has ended; at
    most HOLD_S, and give up once CLAIM_WAIT_S passed with a run whose trainer has not
    started (still queued, or given to a worker that is still importing torch: seconds).
    Whether every run has a point."""
    started = time.monotonic()
    while True:
        counts = store.record_counts(run_ids)  # one query for every run's records
        waiting = [run for run in map(store.get_run, run_ids)
                   if run and _awaits_point(run, counts[run["id"]][0])]
        if not waiting:
            return True
        elapsed = time.monotonic() - started
        if elapsed >= HOLD_S or (elapsed >= CLAIM_WAIT_S
                                 and not all(_trainer_started(run) for run in waiting)):
            return False
        time.sleep(POLL_S)


def _trainer_started(run: dict) -> bool:
    return run["status"] == "running" and "n_train" in run["info"]  # Trainer.info() stored


def _awaits_point(run: dict, n_records: int) -> bool:
    return (run["status"] in ("queued", "running") and "initial" not in run["info"]
            and not n_records)
