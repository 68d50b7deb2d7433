"""A warm worker: a process that has imported torch (and trained one tiny run, which pays for
the first-use costs of the optimizer and the data code) and then waits for queued runs, so a
click on Start gives the first chart point in well under a second of start-up.

    python -m divebatch --db PATH worker --warm WORKER_ID

`warm_pool.keep_warm` reserves WORKER_ID in the store's workers table and starts the process; the
process polls the queue every POLL_S seconds, claims the oldest queued run it can take with
`RunStore.claim_many` (one transaction, which also checks the slot limit, so two warm workers
never take the same run nor exceed the limit) and trains it with `worker.execute_run`, exactly
as a worker started for that run would. When that run belongs to a race it can take whole
(`warm_pool.warm_claim`), it claims every queued run of the race and trains them with
`worker.execute_group`, an epoch each in turn, holding one worker slot. It leaves once it has
been $DIVEBATCH_WARM_IDLE_S seconds (default IDLE_EXIT_S) without a run and the queue is empty,
after IDLE_EXIT_S without a run in any case, or when its row or its store is gone; a dashboard or
a CLI dispatch starts a new one as needed. The command line's commands start theirs with
$DIVEBATCH_WARM_IDLE_S=0 (`warm_pool.leaving_when_idle`): they leave as soon as the queue is
empty, while the dashboard's wait for the next click.
"""

from __future__ import annotations

import os
import time

from divebatch.runs import capacity, queue, warm_pool, worker
from divebatch.runs.store import RunStore

POLL_S = 0.1  # one small read per poll
IDLE_EXIT_S = 900.0  # leave after this long without a run ($DIVEBATCH_WARM_IDLE_S, at most
# this long while the queue holds runs this worker cannot take yet)


def warm_up() -> None:
    """Pay the first-use costs (imports, optimizer, data code) on a tiny throwaway run."""
    from divebatch.config import RunConfig
    from divebatch.training.trainer import train
    train(RunConfig(problem="least_squares", n_samples=64, dim=4, epochs=1, device="cpu",
                    method="divebatch", progress_every=60.0))
    from divebatch.data.problems import load_problem  # noqa: F401  (digits: scikit-learn's loader)
    import sklearn.datasets  # noqa: F401


def serve(store: RunStore, worker_id: int) -> None:
    """Wait for queued runs (or races) and train them, until idle too long."""
    warm_up()
    if not store.update_worker(worker_id, pid=os.getpid(), ready_at=time.time()):
        return  # forgotten while starting (its dispatcher thought it dead)
    idle_since = time.monotonic()
    idle_limit = float(os.environ.get(warm_pool.IDLE_ENV, IDLE_EXIT_S))
    gpus = capacity.gpu_ids()
    limit = capacity.max_workers(gpus)

    def choose(running: list[dict], queued: list[dict]) -> list[int]:
        return warm_pool.warm_claim(running, queued, gpus, limit)

    try:
        while store.path.exists():
            run_ids = store.claim_many(choose, pid=os.getpid(), worker_id=worker_id)
            if run_ids:
                if not train_claimed(store, worker_id, run_ids):
                    return  # forgotten meanwhile: a new warm worker has taken its place
                idle_since = time.monotonic()
            elif leaves_now(store, worker_id, time.monotonic() - idle_since, idle_limit):
                return
            else:
                time.sleep(POLL_S)
    finally:
        if store.path.exists():
            store.remove_worker(worker_id)


def train_claimed(store: RunStore, worker_id: int, run_ids: list[int]) -> bool:
    """Train the claimed run (or race), then offer the freed slot; False if this worker's row
    was forgotten meanwhile."""
    if len(run_ids) == 1:
        worker.execute_run(store, run_ids[0])
    else:
        worker.execute_group(store, run_ids)
    if not store.update_worker(worker_id, run_id=None):
        return False
    queue.dispatch(store)  # the freed slot may suit a run this worker cannot take
    return True


def leaves_now(store: RunStore, worker_id: int, idle_s: float, idle_limit: float) -> bool:
    """Whether this worker, `idle_s` seconds without a run, leaves now: past `idle_limit` once
    the queue is empty, past IDLE_EXIT_S in any case (a queued run it may take when a slot
    frees keeps it up to then). Leaving, it forgets its row first and then hands a run queued
    meanwhile, which a dispatcher may have left to it, to a new worker."""
    if idle_s >= max(idle_limit, IDLE_EXIT_S):
        return True
    if idle_s < idle_limit or _has_queued(store):
        return False
    store.remove_worker(worker_id)
    if _has_queued(store):
        queue.dispatch(store)
    return True


def _has_queued(store: RunStore) -> bool:
    return bool(store.list_runs(status="queued", limit=1))
