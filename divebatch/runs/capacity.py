"""How much this machine runs at once: worker slots, GPUs, and the threads of each worker.

A slot is one worker process; a run with nproc = N takes N. Only the queue's background runs
count against the limit (`background_busy`); a worker process that interleaves several runs
(a race in a warm worker) holds one slot however many it trains.
"""

from __future__ import annotations

import os


def max_workers(gpus: list[str] | None = None) -> int:
    """Worker processes at once: $DIVEBATCH_MAX_WORKERS, else one per GPU (`gpus`, default
    `gpu_ids()`), else cores - 1 (at least 1). A run with nproc = N counts N times."""
    configured = os.environ.get("DIVEBATCH_MAX_WORKERS", "")
    if configured.isdigit() and int(configured) >= 1:
        return int(configured)
    return len(gpu_ids() if gpus is None else gpus) or max(1, (os.cpu_count() or 2) - 1)


def gpu_ids() -> list[str]:
    """The GPUs workers may be given, as CUDA_VISIBLE_DEVICES entries: those this process's
    CUDA_VISIBLE_DEVICES names, else 0 .. count - 1; none without CUDA."""
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if d.strip()]
    return visible[:count] if visible else [str(index) for index in range(count)]


def processes_of(run: dict) -> int:
    """Worker processes a run takes: its nproc."""
    return max(1, int(run["config"].get("nproc", 1) or 1))


def on_any_gpu(config: dict) -> bool:
    """Whether the run lets us choose its GPU (device auto or cuda, not cuda:N or cpu)."""
    return config.get("device", "auto") in ("auto", "cuda")


def background_busy(running: list[dict]) -> int:
    """Worker slots held by background runs (queued, then claimed): one per worker process,
    however many runs it interleaves (a run with nproc = N counts N), and one per run whose
    worker has not started yet; runs started in the foreground from the CLI count none."""
    background = [run for run in running if run["info"].get("background")]
    by_worker: dict[int, int] = {}
    for run in background:
        if run["worker_pid"]:
            by_worker[run["worker_pid"]] = max(by_worker.get(run["worker_pid"], 0),
                                               processes_of(run))
    return sum(by_worker.values()) + sum(processes_of(run) for run in background
                                         if not run["worker_pid"])


def fits(need: int, running: list[dict], limit: int) -> bool:
    """Whether `need` more processes fit beside the running runs (one larger than `limit`
    runs alone)."""
    busy = background_busy(running)
    return not busy or busy + need <= limit


def worker_threads() -> int:
    """torch's threads per background worker: the cores shared by the worker slots and one
    more share for the dashboard and its browsers. Oversubscribed threads spin: on 2 cores
    with one busy, a digits epoch took 3 s with 2 threads and 0.7 s with 1
    (docs/performance.md). $OMP_NUM_THREADS, when set, wins."""
    return max(1, (os.cpu_count() or 1) // (max_workers() + 1))
