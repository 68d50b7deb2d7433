"""Running stored runs: the worker body shared by the CLI and background workers.

`execute_run(store, run_id)` trains the run whose config is stored, appending each epoch's
record, live progress and events to the store, and reading stop / hot-change requests from
the store's control rows between steps.

Background runs are queued in the store and taken by worker processes (never threads or
multiprocessing inside the dashboard): a pool of *warm* workers (`python -m divebatch worker
--warm`, see warm_worker.py) that have already imported torch and poll the queue, so a run
starts within a fraction of a second; runs a warm worker cannot take (several processes, a
GPU of their own) get a worker started for them (`python -m divebatch worker RUN_ID`). Both
claim runs through `RunStore.claim_next`, one transaction that also checks the slot limit.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from divebatch.training import checkpoint
from divebatch.config import PACE_FIELDS, RunConfig, check_hot_change
from divebatch.runs.processes import pid_alive, started_after
from divebatch.runs.store import RunStore

if TYPE_CHECKING:  # the trainer (and torch) is imported only where a run is trained
    from divebatch.training.trainer import RunResult


PACKAGE_ROOT = Path(__file__).resolve().parents[2]
CLAIM_TIMEOUT_S = 60.0  # a claimed run with no worker after this long was abandoned
RESUMABLE_STATUSES = ("interrupted", "failed", "stopped")
PLAY_CONTROLS = ("pause", "resume", "step")
WARM_POOL_DEFAULT = 1  # warm workers kept waiting ($DIVEBATCH_WARM_WORKERS; 0: none)
WORKER_NICENESS = 10  # background workers yield the CPU to the dashboard ($DIVEBATCH_WORKER_NICE)
RACE_GROUP_PREFIX = "race "  # a group named so is a race: one warm worker interleaves it


class StoreControl:
    """The trainer's control channel backed by the store's control rows."""

    def __init__(self, store: RunStore, run_id: int):
        self.store, self.run_id = store, run_id

    def poll(self) -> list[dict]:
        return self.store.take_controls(self.run_id)


def one_line(error: BaseException) -> str:
    text = str(error).strip().replace("\n", "; ")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def execute_run(store: RunStore, run_id: int, on_epoch=None) -> RunResult | None:
    """Train stored run `run_id` to its end; the store holds the outcome.

    A run that already has records (one re-queued by `resume`) continues from its
    checkpoint; the checkpoint is rewritten after every epoch and deleted once the run has
    completed or diverged. Any exception ends the run as "failed" with a one-line error;
    records so far are kept.
    """
    _require_stored_run(store, run_id)
    try:
        outcome = prepare_run(store, run_id, on_epoch).run()
    except Exception as error:  # the worker must record why it died, whatever it was
        outcome = error
    return finish_run(store, run_id, outcome)


def execute_group(store: RunStore, run_ids: list[int]) -> list[RunResult | None]:
    """Train several stored runs in this process, taking turns an epoch at a time
    (`divebatch.training.interleave`), each recorded as `execute_run` records it; an
    exception ends only the run it came from. Returns the results in order (None: failed)."""
    from divebatch.training.interleave import interleave
    results: dict[int, RunResult | None] = {}
    trainers, trained_ids = [], []
    for run_id in [run_id for run_id in run_ids if store.get_run(run_id) is not None]:
        try:
            trainers.append(prepare_run(store, run_id))
            trained_ids.append(run_id)
        except Exception as error:  # noqa: BLE001 - recorded as this run's failure
            results[run_id] = finish_run(store, run_id, error)

    def finish(index: int, outcome) -> None:
        results[trained_ids[index]] = finish_run(store, trained_ids[index], outcome)
    interleave(trainers, on_end=finish)
    return [results.get(run_id) for run_id in run_ids]


def prepare_run(store: RunStore, run_id: int, on_epoch=None):
    """Mark the run running in this process and build its Trainer, wired to the store
    (records, progress, events, control rows, checkpoint) and continuing from its
    checkpoint if it has records."""
    from divebatch.training.trainer import Trainer
    run = _require_stored_run(store, run_id)
    store.mark_running(run_id, os.getpid())

    def record_epoch(record):
        store.append_record(run_id, record.to_dict())
        if on_epoch:
            on_epoch(record)

    def record_event(event):
        store.add_event(run_id, event["kind"], event["message"], epoch=event["epoch"],
                        payload=event["payload"])

    path = checkpoint.run_checkpoint_path(store.path, run_id)
    return Trainer(RunConfig.from_dict(run["config"]), on_epoch=record_epoch,
                   control=StoreControl(store, run_id),
                   on_progress=lambda progress: store.set_progress(run_id, progress),
                   on_event=record_event,
                   on_start=lambda info: store.update_info(run_id, **info),
                   checkpoint_path=path, resume_from=_resume_state(store, run_id, path))


def finish_run(store: RunStore, run_id: int, outcome: RunResult | Exception
               ) -> RunResult | None:
    """Store how the run ended: its result (the checkpoint removed once nothing is left to
    resume), or the exception that ended it as "failed" with a one-line error."""
    if isinstance(outcome, Exception):
        store.add_event(run_id, "error", one_line(outcome),
                        payload={"traceback": "".join(traceback.format_exception(outcome))})
        store.mark_finished(run_id, "failed", one_line(outcome))
        return None
    if outcome.status in ("completed", "diverged"):
        checkpoint.remove(checkpoint.run_checkpoint_path(store.path, run_id))
    store.mark_finished(run_id, outcome.status, outcome.message or None)
    return outcome


def _require_stored_run(store: RunStore, run_id: int) -> dict:
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"run_id should be the id of a stored run, but got run_id={run_id}")
    return run


def _resume_state(store: RunStore, run_id: int, path: Path) -> dict | None:
    """The checkpoint to continue from, None for a fresh start (no records yet)."""
    records = store.records(run_id)
    if not records:
        checkpoint.remove(path)  # a stale file (e.g. of a deleted store) must not be used
        return None
    state = checkpoint.load(path)
    if state["epoch"] != records[-1]["epoch"]:
        raise checkpoint.CheckpointError(
            f"the checkpoint is of epoch {state['epoch']} but the last stored record is of "
            f"epoch {records[-1]['epoch']}; resume the run again")
    return state


def resume(store: RunStore, run_id: int) -> int:
    """Re-queue an interrupted, failed or stopped run and start a worker for it (as the
    worker limit allows); the worker continues from the run's checkpoint, appending records
    from the next epoch. Returns the epoch it continues after (0: no usable checkpoint, so
    it starts again from the beginning). ValueError if the run cannot be resumed."""
    reap(store)
    run = _require_stored_run(store, run_id)
    if run["status"] not in RESUMABLE_STATUSES:
        raise ValueError(f"only {', '.join(RESUMABLE_STATUSES)} runs can be resumed, but run "
                         f"{run_id} is {run['status']}")
    epoch = _checkpoint_epoch(store, run_id)
    if not store.requeue(run_id, keep_epochs=epoch, statuses=RESUMABLE_STATUSES):
        raise ValueError(f"run {run_id} changed status meanwhile (resumed twice?)")
    store.add_event(run_id, "resumed", f"resumed after epoch {epoch}" if epoch
                    else "restarted from the beginning (no checkpoint)", epoch=epoch or None)
    dispatch(store)
    return epoch


def _checkpoint_epoch(store: RunStore, run_id: int) -> int:
    """Epoch of the run's checkpoint if it fits its stored records, else 0 (file removed)."""
    path = checkpoint.run_checkpoint_path(store.path, run_id)
    if not path.exists():
        return 0
    epoch = checkpoint.load(path)["epoch"]  # CheckpointError (a ValueError) if unusable
    stored = [record["epoch"] for record in store.records(run_id)]
    if stored[:epoch] != list(range(1, epoch + 1)):
        checkpoint.remove(path)  # not this run's: its records do not reach that epoch
        return 0
    return epoch


def remove_run_files(store: RunStore, run_ids) -> None:
    """Delete the checkpoints and worker logs of runs that are no longer in the store."""
    for run_id in run_ids:
        checkpoint.remove(checkpoint.run_checkpoint_path(store.path, run_id))
        checkpoint.remove_kept(checkpoint.run_checkpoint_path(store.path, run_id))
        (store.path.parent / "logs" / f"run-{int(run_id)}.log").unlink(missing_ok=True)


def follow_run(store: RunStore, run_id: int) -> None:
    """A rank > 0 of a run on several processes: train beside rank 0 (same config, same
    checkpoint to continue from) and write nothing; rank 0's `execute_run` records the run."""
    from divebatch.training.trainer import train
    run = store.get_run(run_id)
    path = checkpoint.run_checkpoint_path(store.path, run_id)
    train(RunConfig.from_dict(run["config"]), resume_from=_resume_state(store, run_id, path))


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


def warm_pool_size(gpus: list[str] | None = None) -> int:
    """Warm workers to keep: $DIVEBATCH_WARM_WORKERS (default 1), at most max_workers();
    none on a GPU machine, where each run gets GPUs of its own when its worker starts."""
    configured = os.environ.get("DIVEBATCH_WARM_WORKERS", "")
    size = int(configured) if configured.isdigit() else WARM_POOL_DEFAULT
    gpus = gpu_ids() if gpus is None else gpus
    return 0 if gpus else min(size, max_workers(gpus))


def warm_can_take(run: dict, gpus: list[str]) -> bool:
    """A warm worker (one process, no GPU of its own) can train this run."""
    return processes_of(run) == 1 and not (gpus and _on_any_gpu(run["config"]))


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


def warm_claim(running: list[dict], queued: list[dict], gpus: list[str], limit: int
               ) -> list[int]:
    """The queued runs (oldest first) a free warm worker should claim now: the oldest one,
    or every queued run of its race when it belongs to one that a warm worker can take
    whole (they then take turns in that worker and hold one slot); none if the oldest run
    is not for a warm worker or no slot is free."""
    if not queued or not warm_can_take(queued[0], gpus):
        return []  # the oldest run goes first; a dispatcher starts a worker for it
    busy = background_busy(running)
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
    gpus = gpu_ids()
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
                                group=race_group(configs[0]))
    dispatch(store)
    return run_ids


def request_stop(store: RunStore, run_id: int) -> None:
    """Stop a running run between steps, or cancel a queued one at once."""
    if store.cancel_queued(run_id):
        return
    store.send_control(run_id, "stop")


def request_hot_change(store: RunStore, run_id: int, **hot) -> None:
    """Change hot parameters (config.HOT_FIELDS) of a running run between epochs."""
    check_hot_change(RunConfig.from_dict(store.get_run(run_id)["config"]), hot)
    store.send_control(run_id, "set", hot)


def request_play(store: RunStore, run_id: int, kind: str) -> None:
    """"pause" (at the next epoch end), "resume", or "step" (while paused: one more epoch,
    then paused again) a running run."""
    if kind not in PLAY_CONTROLS:
        raise ValueError(f"kind should be one of {', '.join(PLAY_CONTROLS)}, but got "
                         f"kind={kind!r}")
    store.send_control(run_id, kind)


def request_pace(store: RunStore, run_id: int, pace_s: float) -> None:
    """Set a running run's classroom pace: each epoch lasts at least `pace_s` seconds."""
    check_hot_change(RunConfig(), {"pace_s": pace_s}, PACE_FIELDS)
    store.send_control(run_id, "pace", {"pace_s": pace_s})


def typical_run_seconds(store: RunStore, config: RunConfig, recent: int = 200) -> float | None:
    """Median start-to-end seconds of recent completed runs of the same problem, epochs and
    pace (None if there are none): an estimate of how long such a run takes here."""
    same = [run["finished_at"] - run["started_at"]
            for run in store.list_runs(status="completed", limit=recent)
            if run["started_at"] and run["finished_at"]
            and all(run["config"].get(name) == getattr(config, name)
                    for name in ("problem", "epochs", "pace_s"))]
    return statistics.median(same) if same else None


def is_paused(store: RunStore, run_id: int) -> bool:
    """Whether the run's worker is waiting, paused, between two epochs."""
    return bool((store.get_progress(run_id) or {}).get("paused"))


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
    workers is free (`keep_warm` keeps it full); the others get a worker of their own. On a
    GPU machine each run on device auto/cuda gets GPUs of its own, one per process, through
    CUDA_VISIBLE_DEVICES (recorded as info["gpus"]). Returns the ids of the runs it started."""
    reap(store)
    gpus = gpu_ids()
    limit = limit or max_workers(gpus)
    keep_warm(store, gpus)
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
    if warm_free and warm_can_take(run, gpus):
        return None  # a warm worker takes it within a fraction of a second
    need, wants_gpus = processes_of(run), bool(gpus) and _on_any_gpu(run["config"])
    if wants_gpus and need > len(gpus):
        return {**run, "cannot_run": f"nproc = {need} needs {need} GPUs, but this machine has "
                                f"{len(gpus)}; use nproc <= {len(gpus)}"}
    if not _fits(need, running, limit):
        return None
    taken = {gpu for other in running for gpu in other["info"].get("gpus", [])}
    assigned = [gpu for gpu in gpus if gpu not in taken][:need] if wants_gpus else []
    if len(assigned) < need and wants_gpus:
        return None  # the oldest run waits for GPUs; younger ones wait behind it
    return {**run, "assigned": assigned}


def _fits(need: int, running: list[dict], limit: int) -> bool:
    busy = background_busy(running)
    return not busy or busy + need <= limit


def _start(store: RunStore, run: dict, gpus: list[str], limit: int) -> bool:
    """Claim a queued run (if it still fits) and start its worker on `gpus`; False if it
    did not start."""
    run_id = run["id"]

    def still_fits(running: list[dict], queued: list[dict]) -> int | None:
        return run_id if _fits(processes_of(run), running, limit) else None
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


def processes_of(run: dict) -> int:
    """Worker processes a run takes: its nproc."""
    return max(1, int(run["config"].get("nproc", 1) or 1))


def _on_any_gpu(config: dict) -> bool:
    """Whether the run lets us choose its GPU (device auto or cuda, not cuda:N or cpu)."""
    return config.get("device", "auto") in ("auto", "cuda")


def _fail(store: RunStore, run_id: int, message: str) -> None:
    if store.claim_run(run_id):
        store.mark_finished(run_id, "failed", message)


def spawn_worker(store: RunStore, run_id: int, gpus: list[str] | None = None) -> int:
    """`python -m divebatch --db PATH worker RUN_ID` (see `spawn_process`); under
    `torch.distributed.run --nproc_per_node=N --standalone` when the run's config has
    nproc = N > 1; with CUDA_VISIBLE_DEVICES set to `gpus` when given."""
    nproc = store.get_run(run_id)["config"].get("nproc", 1)
    return spawn_process(store, ["worker", str(run_id)], f"run-{run_id}.log", nproc, gpus)


def spawn_process(store: RunStore, args: list[str], log_name: str, nproc: int = 1,
           gpus: list[str] | None = None) -> int:
    """`python -m divebatch --db PATH ARGS` in its own session (it outlives the dashboard),
    with an argument list, never a shell, its output appended to logs/`log_name`."""
    log_dir = store.path.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = worker_env()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    with open(log_dir / log_name, "ab") as log:
        process = subprocess.Popen(
            launch_command(nproc, ["--db", str(store.path), *args]),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=str(PACKAGE_ROOT), env=env)
    return process.pid


def launch_command(nproc: int, args: list[str]) -> list[str]:
    """argv running `python -m divebatch ARGS` on `nproc` local processes: torchrun when
    nproc > 1 (--standalone picks a free rendezvous port, so such runs can share a machine)."""
    if nproc <= 1:
        return [sys.executable, "-m", "divebatch", *args]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--standalone", "-m", "divebatch", *args]


def worker_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", str(worker_threads()))
    env.setdefault("DIVEBATCH_WORKER_NICE", str(WORKER_NICENESS))
    return env


def lower_priority() -> int:
    """Take the niceness worker_env() gave this worker ($DIVEBATCH_WORKER_NICE; 0 or unset:
    none; not an integer: WORKER_NICENESS), so that the dashboard and its browsers keep the
    CPU they need to draw while training runs: on 2 cores, a digits run's first point
    took 2.2 s to appear with the worker at the server's priority and 1.5 s at niceness 10
    (docs/performance.md). Returns the niceness now."""
    try:
        wanted = int(os.environ.get("DIVEBATCH_WORKER_NICE") or 0)
    except ValueError:
        wanted = WORKER_NICENESS
    current = os.nice(0)
    return os.nice(max(0, min(wanted, 19) - current))


def worker_threads() -> int:
    """torch's threads per background worker: the cores shared by the worker slots and one
    more share for the dashboard and its browsers. Oversubscribed threads spin: on 2 cores
    with one busy, a digits epoch took 3 s with 2 threads and 0.7 s with 1
    (docs/performance.md). $OMP_NUM_THREADS, when set, wins."""
    return max(1, (os.cpu_count() or 1) // (max_workers() + 1))
