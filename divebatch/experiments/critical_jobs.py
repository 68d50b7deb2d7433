"""Critical-batch measurements of stored runs, in the foreground or in a background worker.

`submit` checks the request (one-line ValueError naming the field), stores the measurement
with its run (`runs.measurements`) and starts `python -m divebatch --db PATH measure-worker ID`,
a process of its own like a run's worker; `execute` is that worker's body (and the CLI's
foreground path). `request_stop` sets a flag the worker reads between loss evaluations;
`resume` re-queues a stopped, failed or interrupted measurement, whose worker skips the rows
already stored; `reap` marks a measurement whose worker died as interrupted.
"""

from __future__ import annotations

import os
from typing import Callable

from divebatch.config import RunConfig
from divebatch.experiments.critical_batch import (START, CheckpointWork, CriticalBatchSettings,
                                                  check_settings, planned_batch_sizes,
                                                  planned_epochs)
from divebatch.runs import processes, worker
from divebatch.runs.measurements import RESUMABLE, Measurements
from divebatch.runs.processes import pid_alive, started_after
from divebatch.runs.store import ACTIVE_STATUSES, RunStore
from divebatch.training import checkpoint

KIND = "critical_batch"


def plan(store: RunStore, run_id: int, settings: CriticalBatchSettings
         ) -> tuple[RunConfig, list[int], list[int]]:
    """(the run's config, epochs, batch sizes) a measurement of `run_id` would branch at;
    ValueError (one line, naming the field) if it cannot be measured so."""
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"run_id should be the id of a stored run, but got run_id={run_id}")
    if run["status"] in ACTIVE_STATUSES:
        raise ValueError(f"run_id: run {run_id} is still {run['status']}; measure its "
                         f"critical batch size once it has ended")
    config = RunConfig.from_dict(run["config"])
    checkpoint.adopt_shared(store.path, run_id, run["config"], store.records(run_id))
    kept = checkpoint.kept_epochs(checkpoint.run_checkpoint_path(store.path, run_id))
    n_train = run["info"].get("n_train")
    check_settings(settings, config, kept, n_train)
    return (config, planned_epochs(settings, kept),
            planned_batch_sizes(settings, config, n_train))


def create(store: RunStore, run_id: int, settings: CriticalBatchSettings) -> int:
    """Check and store a queued measurement of `run_id`; its id."""
    plan(store, run_id, settings)
    return Measurements(store).create(run_id, KIND, settings.to_dict())


def submit(store: RunStore, run_id: int, settings: CriticalBatchSettings) -> int:
    """Store a measurement and start its background worker; its id."""
    measurement_id = create(store, run_id, settings)
    _start_worker(store, measurement_id)
    return measurement_id


def _start_worker(store: RunStore, measurement_id: int) -> None:
    measurements = Measurements(store)
    try:
        pid = processes.spawn_process(store, ["measure-worker", str(measurement_id)],
                                 f"measurement-{measurement_id}.log")
    except OSError as error:
        measurements.mark_finished(measurement_id, "failed", f"could not start a worker: {error}")
        return
    measurements.mark_running(measurement_id, pid)


def execute(store: RunStore, measurement_id: int,
            on_progress: Callable[[dict], None] | None = None) -> str:
    """Measure in this process until done or stopped; the final status (completed, stopped
    or failed, with a one-line error stored). A KeyboardInterrupt stores it as stopped (by
    the user; resumable) and propagates."""
    measurements = Measurements(store)
    measurement = measurements.get(measurement_id)
    if measurement is None:
        raise ValueError(f"measurement_id should be the id of a stored measurement, but got "
                         f"measurement_id={measurement_id}")
    measurements.mark_running(measurement_id, os.getpid())
    try:
        status = _measure(store, measurement, on_progress)
    except KeyboardInterrupt:  # Ctrl-C of a foreground measurement: the user stopped it
        measurements.mark_finished(measurement_id, "stopped",
                                   "stopped by the user (Ctrl-C); rows so far are kept")
        raise
    except Exception as error:  # the worker must record why it ended, whatever it was
        measurements.mark_finished(measurement_id, "failed", worker.one_line(error))
        return "failed"
    measurements.mark_finished(measurement_id, status)
    return status


def _measure(store: RunStore, measurement: dict, on_progress) -> str:
    from divebatch.experiments.branching import BranchPoint  # torch: only where one measures
    measurements, measurement_id = Measurements(store), measurement["id"]
    settings = CriticalBatchSettings.from_dict(measurement["settings"])
    config, epochs, sizes = plan(store, measurement["run_id"], settings)
    done: dict[int, dict[int, dict]] = {}
    for row in measurements.rows(measurement_id):
        done.setdefault(row["epoch"], {})[row["batch_size"]] = row["data"]
    total = len(epochs) * (len(sizes) + 1)
    path = checkpoint.run_checkpoint_path(store.path, measurement["run_id"])

    def stored(epoch: int, batch_size: int, data: dict) -> None:
        measurements.put_row(measurement_id, epoch, batch_size, data)
        progress = {"done": sum(map(len, done.values())), "total": total, "epoch": epoch,
                    "batch_size": batch_size}
        measurements.set_progress(measurement_id, progress)
        if on_progress:
            on_progress(progress)

    for epoch in epochs:
        rows = done.setdefault(epoch, {})
        if START in rows and (rows[START]["target"] is None or all(b in rows for b in sizes)):
            continue
        point = BranchPoint(config, checkpoint.load(checkpoint.kept_path(path, epoch)),
                            eval_samples=settings.eval_samples)
        work = CheckpointWork(point, settings, sizes, rows,
                              on_row=lambda batch_size, data, e=epoch: stored(e, batch_size, data),
                              should_stop=lambda: measurements.stop_requested(measurement_id))
        if not work.run() or measurements.stop_requested(measurement_id):
            return "stopped"
    return "completed"


def request_stop(store: RunStore, measurement_id: int) -> None:
    """Stop a running measurement at its next loss evaluation (rows done are kept)."""
    _require(store, measurement_id)
    Measurements(store).request_stop(measurement_id)


def resume(store: RunStore, measurement_id: int) -> None:
    """Re-queue a stopped, failed or interrupted measurement and start its worker."""
    reap(store)
    measurement = _require(store, measurement_id)
    if not Measurements(store).requeue(measurement_id):
        raise ValueError(f"only {', '.join(RESUMABLE)} measurements can be resumed, but "
                         f"measurement {measurement_id} is {measurement['status']}")
    _start_worker(store, measurement_id)


def reap(store: RunStore) -> list[int]:
    """Running measurements whose worker process is gone become interrupted."""
    measurements = Measurements(store)
    lost = [m["id"] for m in measurements.running()
            if not pid_alive(m["worker_pid"])
            or started_after(m["worker_pid"], m["started_at"] or m["created_at"])]
    for measurement_id in lost:
        measurements.mark_finished(measurement_id, "interrupted",
                                   "the worker process ended unexpectedly; rows so far are kept")
    return lost


def _require(store: RunStore, measurement_id: int) -> dict:
    measurement = Measurements(store).get(measurement_id)
    if measurement is None:
        raise ValueError(f"measurement_id should be the id of a stored measurement, but got "
                         f"measurement_id={measurement_id}")
    return measurement
