"""The queue of background runs: submit, dispatch, reap, resume.

Background runs are queued in the store and taken by worker processes (never threads or
multiprocessing inside the dashboard): a pool of *warm* workers (warm_pool.py) that have
already imported torch and poll the queue, so a run starts within a fraction of a second; runs
a warm worker cannot take (several processes, a GPU of their own) get a worker started for
them (`python -m divebatch worker RUN_ID`, processes.py). Both claim runs through
`RunStore.claim_next`, one transaction that also checks the slot limit (capacity.py). Every
worker calls `dispatch` when it ends, so the queue drains with no dashboard open.
"""

from __future__ import annotations

import statistics
import time

from divebatch.config import RunConfig
from divebatch.runs import capacity, warm_pool
from divebatch.runs.processes import CLAIM_TIMEOUT_S, pid_alive, spawn_worker, started_after
from divebatch.runs.store import RunStore
from divebatch.runs.worker import resumable_epoch, stored_run

RESUMABLE_STATUSES = ("interrupted", "failed", "stopped")


def submit(store: RunStore, config: RunConfig, name: str = "", group: str = "") -> int:
    """Validate and queue a run, then start workers as the limit allows."""
    config.validate()
    run_id = store.create_run(config.to_dict(), name=name or config.name, status="queued",
                              group=group)
    dispatch(store)
    return run_id


def submit_race(store: RunStore, configs: list[RunConfig]) -> list[int]:
    """Validate and queue the runs of a race together (one transaction, so a warm worker
    claims all of them or none), then start workers as the limit allows."""
    for config in configs:
        config.validate()
    run_ids = store.create_runs([config.to_dict() for config in configs],
                                names=[config.name for config in configs],
                                group=warm_pool.race_group(configs[0]))
    dispatch(store)
    return run_ids


def resume(store: RunStore, run_id: int) -> int:
    """Re-queue an interrupted, failed or stopped run and start a worker for it (as the
    worker limit allows); the worker continues from the run's checkpoint, appending records
    from the next epoch. Returns the epoch it continues after (0: no usable checkpoint, so
    it starts again from the beginning). ValueError if the run cannot be resumed."""
    reap(store)
    epoch = requeue_to_resume(store, run_id)
    dispatch(store)
    return epoch


def requeue_to_resume(store: RunStore, run_id: int) -> int:
    """`resume` without starting a worker: the run queued to continue from its checkpoint
    (records after it dropped); the epoch it continues after. ValueError if it cannot be."""
    run = stored_run(store, run_id)
    if run["status"] not in RESUMABLE_STATUSES:
        raise ValueError(f"only {', '.join(RESUMABLE_STATUSES)} runs can be resumed, but run "
                         f"{run_id} is {run['status']}")
    epoch = resumable_epoch(store, run_id)
    if not store.requeue(run_id, keep_epochs=epoch, statuses=RESUMABLE_STATUSES):
        raise ValueError(f"run {run_id} changed status meanwhile (resumed twice?)")
    store.add_event(run_id, "resumed", f"resumed after epoch {epoch}" if epoch
                    else "restarted from the beginning (no checkpoint)", epoch=epoch or None)
    return epoch


def typical_run_seconds(store: RunStore, config: RunConfig, recent: int = 200) -> float | None:
    """Median start-to-end seconds of recent completed runs of the same problem, epochs and
    pace (None if there are none): an estimate of how long such a run takes here."""
    same = [run["finished_at"] - run["started_at"]
            for run in store.list_runs(status="completed", limit=recent)
            if run["started_at"] and run["finished_at"]
            and all(run["config"].get(name) == getattr(config, name)
                    for name in ("problem", "epochs", "pace_s"))]
    return statistics.median(same) if same else None


def reap(store: RunStore) -> list[int]:
    """Runs marked running whose worker is gone become `interrupted` (records kept)."""
    lost = [run["id"] for run in store.list_runs(status="running") if _lost(run)]
    for run_id in lost:
        store.mark_finished(run_id, "interrupted",
                            "the worker process ended unexpectedly; records so far are kept")
    return lost


def _lost(run: dict) -> bool:
    if run["worker_pid"]:
        return not pid_alive(run["worker_pid"]) \
            or started_after(run["worker_pid"], run["started_at"] or run["created_at"])
    # claimed by a dispatcher that died before it could start the worker (or created as
    # running by a CLI process that has not yet marked it)
    return time.time() - (run["started_at"] or run["created_at"]) > CLAIM_TIMEOUT_S


def dispatch(store: RunStore, limit: int | None = None) -> list[int]:
    """Start workers for queued runs, oldest first, while their processes fit in `limit`
    (a run with nproc = N takes N; one larger than `limit` runs alone; foreground CLI runs
    take none). Runs a warm worker can take are left to the warm pool while one of its
    workers is free (`warm_pool.keep_warm` keeps it full); the others get a worker of their
    own. On a GPU machine each run on device auto/cuda gets GPUs of its own, one per process,
    through CUDA_VISIBLE_DEVICES (recorded as info["gpus"]). Returns the ids of the runs it
    started."""
    reap(store)
    gpus = capacity.gpu_ids()
    limit = limit or capacity.max_workers(gpus)
    warm_pool.keep_warm(store, gpus)
    warm_free = any(worker["run_id"] is None for worker in store.workers())
    started = []
    while (run := _next_cold_run(store, gpus, limit, warm_free)) is not None:
        if run.get("cannot_run"):
            _fail(store, run["id"], run["cannot_run"])
        elif _start(store, run, run["assigned"], limit):
            started.append(run["id"])
        else:
            break
    return started


def _next_cold_run(store: RunStore, gpus: list[str], limit: int, warm_free: bool
                   ) -> dict | None:
    """The oldest queued run if a worker should be started for it now (with "assigned" GPUs,
    or with the reason why it "cannot_run" here), else None."""
    running, queued = store.list_runs(status="running"), store.list_runs(status="queued")
    if not queued:
        return None
    run = queued[-1]
    if warm_free and warm_pool.warm_can_take(run, gpus):
        return None  # a warm worker takes it within a fraction of a second
    need = capacity.processes_of(run)
    wants_gpus = bool(gpus) and capacity.on_any_gpu(run["config"])
    if wants_gpus and need > len(gpus):
        return {**run, "cannot_run": f"nproc = {need} needs {need} GPUs, but this machine has "
                                f"{len(gpus)}; use nproc <= {len(gpus)}"}
    if not capacity.fits(need, running, limit):
        return None
    taken = {gpu for other in running for gpu in other["info"].get("gpus", [])}
    assigned = [gpu for gpu in gpus if gpu not in taken][:need] if wants_gpus else []
    if len(assigned) < need and wants_gpus:
        return None  # the oldest run waits for GPUs; younger ones wait behind it
    return {**run, "assigned": assigned}


def _start(store: RunStore, run: dict, gpus: list[str], limit: int) -> bool:
    """Claim a queued run (if it still fits) and start its worker on `gpus`; False if it
    did not start."""
    run_id = run["id"]

    def still_fits(running: list[dict], queued: list[dict]) -> int | None:
        return run_id if capacity.fits(capacity.processes_of(run), running, limit) else None
    if store.claim_next(still_fits) is None:
        return False
    if gpus or "gpus" in run["info"]:  # a resumed run may hold its last GPUs
        store.update_info(run_id, gpus=gpus)
    try:
        pid = spawn_worker(store, run_id, gpus=gpus)
    except OSError as error:
        store.mark_finished(run_id, "failed", f"could not start a worker: {error}")
        return False
    store.mark_running(run_id, pid)
    return True


def _fail(store: RunStore, run_id: int, message: str) -> None:
    if store.claim_run(run_id):
        store.mark_finished(run_id, "failed", message)
