"""Sweeps and reproductions on a Ray cluster: one plain Ray task per run.

The driver (the `sweep` / `reproduce` command, or a background `ray-driver` process started
for the dashboard) is the only writer of the run store. Each task trains its run with the
same `worker.execute_run` as a local worker, handed a `RelayStore`: reads answer from a
snapshot of the run, writes travel through a `Mailbox` actor to the driver, which applies them
to the real store in order. Workers on other machines never open the SQLite file.

Runs are claimed in the store (status running, worker pid = the driver's) before their
tasks are submitted, so local dispatchers leave them alone and `queue.reap` marks them
interrupted if the driver dies. The driver submits no more tasks than the cluster trains at
once (`slots`), so each task goes to a worker process that has just finished one, with torch
and divebatch already imported; a pending task would make Ray start a fresh worker that
imports them again (seconds per run). A task lost with its worker or node is marked
interrupted and retried once, from its checkpoint when the driver can see it (one machine,
or a file system shared at the same path); Stop ends runs not yet submitted, cancels tasks
that have not started and asks running ones to stop, cancelling them after `STOP_GRACE_S`.

The runs are those the local backend would train (`groups.queued_run`): a re-run of a sweep
stopped by Ctrl-C or Stop, or whose driver died, continues its stale runs in place, from
their checkpoints where the driver can see them (as above; else from the beginning).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from divebatch.training import checkpoint
from divebatch.runs import processes, worker
from divebatch.runs.ray_tasks import RELAYED_WRITES, Mailbox, train_task

INSTALL_HINT = 'the Ray backend needs Ray: pip install "divebatch[ray]"'
LOCAL = "local"                # --address: start a one-machine cluster for this command
POLL_S = 0.2                   # driver loop period: reports, finished tasks
CONTROL_POLL_S = 1.0           # how often the store's stop / set requests are read
STOP_GRACE_S = 30.0            # a running task asked to stop is cancelled after this long
CONNECT_TIMEOUT_S = 5.0        # TCP probe of a head node before Ray's own (minutes-long) retries


class RayBackendError(ValueError):
    """Ray missing, cluster unreachable, or a run larger than any node: one line."""


@dataclass(frozen=True)
class RayOptions:
    address: str = LOCAL      # "local", "auto", "HOST:PORT" or "ray://HOST:PORT"
    gpus_per_run: float = 0.0  # Ray num_gpus per task; fractions share a GPU
    cpus_per_run: float = 1.0  # Ray num_cpus per task
    threads: int = 1          # torch CPU threads in each task (0: torch's default)

    def validate(self) -> None:
        errors = []
        if not self.address.strip():
            errors.append("--address should be local, auto, HOST:PORT or ray://HOST:PORT, "
                          "but got ''")
        if not self.gpus_per_run >= 0:
            errors.append(f"--gpus-per-run should be a number >= 0, but got "
                          f"--gpus-per-run={self.gpus_per_run}")
        if not self.cpus_per_run > 0:
            errors.append(f"--cpus-per-run should be a number > 0, but got "
                          f"--cpus-per-run={self.cpus_per_run}")
        if self.threads < 0:
            errors.append(f"--threads should be an int >= 0, but got --threads={self.threads}")
        if errors:
            raise RayBackendError("; ".join(errors))


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayBackendError(INSTALL_HINT) from None
    return ray


def probe(address: str) -> None:
    """Fail fast (Ray itself retries for minutes) when a head node's port does not answer."""
    if address in (LOCAL, "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayBackendError(f"--address should be local, auto, HOST:PORT or "
                              f"ray://HOST:PORT, but got --address={address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RayBackendError(f"cannot reach the Ray cluster at {address}: {reason}") from None


@contextmanager
def session(options: RayOptions):
    """Join (or start) the cluster of `options.address` for the block, then leave it. A
    process already connected to Ray (a test, a notebook) keeps its connection."""
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    probe(options.address)
    kwargs = {"include_dashboard": False, "log_to_driver": False,
              "logging_level": "WARNING"}
    if options.address != LOCAL:  # the nodes get this divebatch, not whatever they have
        kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])]}
    try:
        ray.init(address=options.address, **kwargs)
    except Exception as error:  # Ray raises bare Exceptions too, e.g. a node start timeout
        raise RayBackendError(f"cannot reach the Ray cluster at {options.address}: "
                              f"{worker.one_line(error)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def slots(options: RayOptions) -> int:
    """How many runs the cluster trains at once: its CPUs (and GPUs) over one run's."""
    total = import_ray().cluster_resources()
    fits = [total.get("CPU", 0.0) / options.cpus_per_run]
    if options.gpus_per_run:
        fits.append(total.get("GPU", 0.0) / options.gpus_per_run)
    return max(1, int(min(fits)))


def check_fits(options: RayOptions, configs) -> None:
    """RayBackendError if a run needs more than the largest node has, or several processes."""
    for config in configs:
        if config.nproc > 1:
            raise RayBackendError(f"nproc should be 1 with --backend ray (a run on several "
                                  f"processes uses torchrun), but got nproc={config.nproc}")
    nodes = [node["Resources"] for node in import_ray().nodes() if node["Alive"]]
    for name, flag, need in (("GPU", "--gpus-per-run", options.gpus_per_run),
                             ("CPU", "--cpus-per-run", options.cpus_per_run)):
        largest = max((node.get(name, 0.0) for node in nodes), default=0.0)
        if need > largest:
            raise RayBackendError(f"{flag} should be <= {largest:g} (the most {name}s of any "
                                  f"node of the Ray cluster), but got {flag}={need:g}")


# --- driver side

def claim(store, run_ids: list[int], info: dict | None) -> list[int | None]:
    """Claim queued runs (`groups.queued_run`) for the Ray driver (None where a local
    dispatcher claimed one first: it trains there)."""
    ids = []
    for run_id in run_ids:
        if not store.claim_run(run_id):
            ids.append(None)
            continue
        store.update_info(run_id, **(info or {}), backend="ray")
        ids.append(run_id)
    return ids


class Driver:
    """Submits one task per run and writes what the tasks report into the store."""

    def __init__(self, store, options: RayOptions):
        ray = import_ray()
        self.ray, self.store, self.options = ray, store, options
        self.mailbox = ray.remote(num_cpus=0)(Mailbox).remote()
        self.task = ray.remote(max_retries=0)(train_task).options(
            num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run)
        self.refs: dict[int, object] = {}      # run id -> the ObjectRef of its task
        self.waiting: list[int] = []           # claimed runs not yet submitted, in order
        self.slots = slots(options)            # tasks in flight at most
        self.started: set[int] = set()         # runs whose task has begun training
        self.retried: set[int] = set()
        self.stop_asked: dict[int, float] = {}  # run id -> when stop was forwarded

    def run(self, run_ids: list[int], on_done: Callable[[int], None] | None = None) -> None:
        """Train `run_ids` (claimed runs) to their ends; Ctrl-C stops them all, records kept."""
        for run_id in run_ids:
            self.store.mark_running(run_id, os.getpid())
        self.waiting = list(run_ids)
        try:
            self.loop(on_done)
        except KeyboardInterrupt:
            self.abandon("interrupted from the keyboard")
            raise

    def submit(self, run_id: int) -> None:
        run = self.store.get_run(run_id)
        self.refs[run_id] = self.task.remote(run, self.store.records(run_id),
                                             str(self.store.path), self.mailbox,
                                             self.options.threads)

    def loop(self, on_done) -> None:
        next_controls = 0.0
        while self.refs or self.waiting:
            while self.waiting and len(self.refs) < self.slots:
                self.submit(self.waiting.pop(0))
            ready, _ = self.ray.wait(list(self.refs.values()), num_returns=len(self.refs),
                                     timeout=POLL_S)
            self.apply_reports()
            settled = []
            if time.monotonic() >= next_controls:
                settled += self.forward_controls()
                next_controls = time.monotonic() + CONTROL_POLL_S
            by_ref = {ref: run_id for run_id, ref in self.refs.items()}
            settled += [by_ref[ref] for ref in ready if self.finish(by_ref[ref], ref)]
            for run_id in settled if on_done else ():
                on_done(run_id)

    def apply_reports(self) -> None:
        for run_id, method, args, kwargs in self.ray.get(self.mailbox.drain.remote()):
            if method == "started":
                self.started.add(run_id)
                self.store.update_info(run_id, ray_node=kwargs["node"], ray_pid=kwargs["pid"])
            elif method in RELAYED_WRITES:
                getattr(self.store, method)(run_id, *args, **kwargs)

    def forward_controls(self) -> list[int]:
        """Stop / set requests from the store to the tasks (the mailbox keeps those of runs
        not yet submitted); overdue stops become cancels. A stop ends a run not yet
        submitted here: returns the ids of those runs."""
        stopped = []
        for run_id in [*self.waiting, *self.refs]:
            for control in self.store.take_controls(run_id):
                if control["kind"] == "stop" and run_id in self.waiting:
                    stopped.append(run_id)
                    break
                if control["kind"] == "stop" and run_id not in self.started:
                    # force: an interrupt could land mid-import and spoil a reused worker
                    self.ray.cancel(self.refs[run_id], force=True)
                    continue
                if control["kind"] == "stop":
                    self.stop_asked.setdefault(run_id, time.monotonic())
                self.mailbox.send.remote(run_id, {"kind": control["kind"],
                                                  "payload": control["payload"]})
            asked = self.stop_asked.get(run_id)
            if asked is not None and time.monotonic() - asked > STOP_GRACE_S:
                self.ray.cancel(self.refs[run_id], force=True)
        for run_id in stopped:
            self.waiting.remove(run_id)
            self.end_if_running(run_id, "stopped", "cancelled before it started")
        return stopped

    def finish(self, run_id: int, ref) -> bool:
        """Settle a task that ended; False when the run goes on (retried)."""
        exceptions = self.ray.exceptions
        del self.refs[run_id]
        try:
            self.ray.get(ref)
        except exceptions.TaskCancelledError:
            self.apply_reports()
            self.end_if_running(run_id, "stopped", "stopped: the Ray task was cancelled"
                                if run_id in self.started else "cancelled before it started")
            return True
        except exceptions.RayTaskError as error:  # execute_run failed outside training
            self.apply_reports()
            self.end_if_running(run_id, "failed", worker.one_line(error.cause or error))
            return True
        except exceptions.RayError as error:  # worker process or node lost
            self.apply_reports()
            return not self.lost(run_id, error)
        self.apply_reports()
        self.end_if_running(run_id, "failed", "the Ray task ended without a final status")
        return True

    def end_if_running(self, run_id: int, status: str, message: str) -> None:
        if self.store.get_run(run_id)["status"] == "running":
            self.store.mark_finished(run_id, status, message)

    def lost(self, run_id: int, error: Exception) -> bool:
        """Mark the run interrupted; retry it once (from its checkpoint if the driver can
        read it, else from the start). True if it was resubmitted."""
        message = f"the Ray task was lost ({type(error).__name__}); records so far are kept"
        self.store.add_event(run_id, "interrupted", message)
        self.store.mark_finished(run_id, "interrupted", message)
        if run_id in self.retried:
            return False
        self.retried.add(run_id)
        self.started.discard(run_id)
        self.stop_asked.pop(run_id, None)
        try:
            epoch = worker.resumable_epoch(self.store, run_id)
        except checkpoint.CheckpointError:
            epoch = 0
        if not (self.store.requeue(run_id, keep_epochs=epoch, statuses=("interrupted",))
                and self.store.claim_run(run_id)):
            return False  # a local dispatcher took it over
        self.store.add_event(run_id, "resumed", f"retried on Ray after epoch {epoch}"
                             if epoch else "retried on Ray from the beginning",
                             epoch=epoch or None)
        self.store.mark_running(run_id, os.getpid())
        self.submit(run_id)
        return True

    def abandon(self, reason: str) -> None:
        """Cancel every task; their runs end stopped, records kept."""
        for ref in self.refs.values():
            self.ray.cancel(ref, force=True)
        self.apply_reports()
        for run_id in [*self.refs, *self.waiting]:
            self.end_if_running(run_id, "stopped", reason)
        self.refs.clear()
        self.waiting.clear()


def drive(store, run_ids: list[int], options: RayOptions,
          on_done: Callable[[int], None] | None = None) -> None:
    """Connect, check the runs fit the cluster, train them; shut down what we started."""
    with session(options):
        check_fits(options, [_config(store, run_id) for run_id in run_ids])
        Driver(store, options).run(run_ids, on_done)


def _config(store, run_id: int):
    from divebatch.config import RunConfig
    return RunConfig.from_dict(store.get_run(run_id)["config"])


class RayBackend:
    """The Ray counterpart of groups.run_missing / groups.submit_missing: the same runs, a
    stale one (stopped, failed, interrupted) continued in place from its checkpoint."""

    def __init__(self, options: RayOptions):
        options.validate()
        self.options = options

    def run_missing(self, store, group: str, planned, info: dict | None = None,
                    on_run_done=None) -> int:
        """Train the missing planned runs on the cluster from this process; how many ran.
        Cluster problems raise RayBackendError before any run is stored or resumed."""
        from divebatch.runs.groups import missing_in_store, queued_run
        with session(self.options):
            todo = missing_in_store(store, group, planned)
            check_fits(self.options, [p.config for p, _ in todo])
            ids = claim(store, [queued_run(store, group, p, stale) for p, stale in todo], info)
            by_id = {run_id: p for run_id, (p, _) in zip(ids, todo) if run_id is not None}
            done = []

            def settled(run_id: int) -> None:
                done.append(run_id)
                if on_run_done:
                    on_run_done(by_id[run_id], store.get_run(run_id))
            Driver(store, self.options).run(list(by_id), settled)
        return len(done)

    def submit_missing(self, store, group: str, planned, info: dict | None = None
                       ) -> list[int]:
        """Claim the missing planned runs and start a background driver process for them."""
        from divebatch.runs.groups import missing_in_store, queued_run
        import_ray()
        probe(self.options.address)
        queued = [queued_run(store, group, p, stale)
                  for p, stale in missing_in_store(store, group, planned)]
        ids = [run_id for run_id in claim(store, queued, info) if run_id is not None]
        if ids:
            pid = spawn_driver(store, ids, self.options)
            for run_id in ids:
                store.mark_running(run_id, pid)
        return ids


def spawn_driver(store, run_ids: list[int], options: RayOptions) -> int:
    """`python -m divebatch --db PATH ray-driver ... RUN_IDS` in its own session, logging to
    <store folder>/logs/<store file name>/ray-driver-<first id>.log; its pid."""
    log_dir = processes.log_folder(store.path)
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "divebatch", "--db", str(store.path), "ray-driver",
            "--address", options.address, "--gpus-per-run", str(options.gpus_per_run),
            "--cpus-per-run", str(options.cpus_per_run), "--threads", str(options.threads),
            *map(str, run_ids)]
    with open(log_dir / f"ray-driver-{run_ids[0]}.log", "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=str(processes.PACKAGE_ROOT), env=processes.worker_env())
    return process.pid


def fail_runs(store, run_ids: list[int], message: str) -> None:
    """The background driver could not start: its runs end failed with the reason."""
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run and run["status"] == "running":
            store.mark_finished(run_id, "failed", message)
