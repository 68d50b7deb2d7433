"""The warm pool: worker processes that have already imported torch and poll the queue.

A warm worker (`python -m divebatch worker --warm ID`, see warm_worker.py) takes a queued run
within a fraction of a second. It takes runs of one process with no GPU of their own
(`warm_can_take`); on a GPU machine there is no pool, since each run gets GPUs of its own when
its worker starts. A race (a group named `RACE_GROUP_PREFIX`...) goes to one warm worker
whole, its runs taking turns an epoch at a time, when a warm worker can take each of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

from divebatch.config import RunConfig
from divebatch.runs import capacity
from divebatch.runs.processes import CLAIM_TIMEOUT_S, pid_alive, spawn_process, started_after
from divebatch.runs.store import RunStore

WARM_POOL_DEFAULT = 1  # warm workers kept waiting ($DIVEBATCH_WARM_WORKERS; 0: none)
RACE_GROUP_PREFIX = "race "  # a group named so is a race: one warm worker interleaves it
IDLE_ENV = "DIVEBATCH_WARM_IDLE_S"  # seconds a warm worker waits without a run (warm_worker.py)


def warm_pool_size(gpus: list[str] | None = None) -> int:
    """Warm workers to keep: $DIVEBATCH_WARM_WORKERS (default 1), at most max_workers();
    none on a GPU machine, where each run gets GPUs of its own when its worker starts."""
    configured = os.environ.get("DIVEBATCH_WARM_WORKERS", "")
    size = int(configured) if configured.isdigit() else WARM_POOL_DEFAULT
    gpus = capacity.gpu_ids() if gpus is None else gpus
    return 0 if gpus else min(size, capacity.max_workers(gpus))


def warm_can_take(run: dict, gpus: list[str]) -> bool:
    """A warm worker (one process, no GPU of its own) can train this run."""
    return capacity.processes_of(run) == 1 and not (gpus and capacity.on_any_gpu(run["config"]))


def warm_claim(running: list[dict], queued: list[dict], gpus: list[str], limit: int
               ) -> list[int]:
    """The queued runs (oldest first) a free warm worker should claim now: the oldest one,
    or every queued run of its race when it belongs to one that a warm worker can take
    whole (they then take turns in that worker and hold one slot); none if the oldest run
    is not for a warm worker or no slot is free."""
    if not queued or not warm_can_take(queued[0], gpus):
        return []  # the oldest run goes first; a dispatcher starts a worker for it
    busy = capacity.background_busy(running)
    if busy and busy + 1 > limit:
        return []
    return [run["id"] for run in _interleaved_race(queued[0], queued, gpus)]


def _interleaved_race(oldest: dict, queued: list[dict], gpus: list[str]) -> list[dict]:
    """The queued runs of `oldest`'s race if one warm worker can take them all, else
    [oldest]."""
    if not oldest["group"].startswith(RACE_GROUP_PREFIX):
        return [oldest]
    race = [run for run in queued if run["group"] == oldest["group"]]
    return race if all(warm_can_take(run, gpus) for run in race) else [oldest]


def race_interleaves(configs: list[RunConfig]) -> bool:
    """Whether a race of these runs will train interleaved in one warm worker (a warm pool
    exists here and a warm worker can take each run), rather than one run after another."""
    gpus = capacity.gpu_ids()
    return warm_pool_size(gpus) > 0 and all(
        warm_can_take({"config": config.to_dict()}, gpus) for config in configs)


def race_group(config: RunConfig) -> str:
    """The group name of a new race on `config`'s problem and seed."""
    return f"{RACE_GROUP_PREFIX}{config.problem} seed {config.seed} {time.strftime('%H:%M:%S')}"


def keep_warm(store: RunStore, gpus: list[str] | None = None) -> None:
    """Forget warm workers that died (their run, if any, is reaped as interrupted) and
    start new ones until the pool is full."""
    alive = []
    for worker in store.workers():
        if _worker_gone(worker):
            store.remove_worker(worker["id"])
        else:
            alive.append(worker)
    pool = warm_pool_size(gpus)
    if len(alive) >= pool:
        return  # the common case costs one read, not the write lock
    while (worker_id := store.reserve_worker(pool)) is not None:
        try:
            pid = spawn_process(store, ["worker", "--warm", str(worker_id)], "warm-worker.log")
        except OSError:
            store.remove_worker(worker_id)
            return
        store.update_worker(worker_id, pid=pid)


@contextlib.contextmanager
def leaving_when_idle() -> Iterator[None]:
    """Warm workers started inside this block, and the workers they start, leave as soon as
    the queue is empty ($DIVEBATCH_WARM_IDLE_S=0 in their environment, unless it is set): a
    command-line command leaves no process behind it, while the dashboard's warm workers wait
    15 minutes for the next click."""
    if IDLE_ENV in os.environ:
        yield
        return
    os.environ[IDLE_ENV] = "0"
    try:
        yield
    finally:
        os.environ.pop(IDLE_ENV, None)


def stop_warm_workers(store: RunStore) -> None:
    """End every warm worker of this store (SIGTERM; a run one trains is then reaped as
    interrupted) and forget it. For tests and benchmarks that start a dashboard."""
    for worker in store.workers():
        if worker["pid"] and not _worker_gone(worker):
            try:
                os.kill(worker["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        store.remove_worker(worker["id"])


def _worker_gone(worker: dict) -> bool:
    if worker["pid"] is None:  # its dispatcher died before it could start it
        return time.time() - worker["created_at"] > CLAIM_TIMEOUT_S
    return not pid_alive(worker["pid"]) or started_after(worker["pid"], worker["created_at"])
