"""Worker processes: starting them, and whether one is still the process we started.

Workers are `python -m divebatch --db PATH ...` processes in their own session (they outlive
the dashboard), started with an argument list, never a shell, never `multiprocessing`
(`spawn_process`, `spawn_worker`), their output appended to a log beside the store. They run
at a lower priority than the dashboard (`lower_priority`) with fewer torch threads
(`capacity.worker_threads`).

Workers are recorded by pid; a pid can be reused by a newer process after the worker died, so
`started_after` compares the process's start time with when the worker was recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from divebatch.runs import capacity
from divebatch.runs.store import RunStore

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
PID_CLOCK_SLACK_S = 2.0  # /proc start times are whole-second boot time plus clock ticks
CLAIM_TIMEOUT_S = 60.0  # a claimed run (or warm-worker row) with no process after this long
# was abandoned
WORKER_NICENESS = 10  # background workers yield the CPU to the dashboard ($DIVEBATCH_WORKER_NICE)


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` runs (a zombie, or a finished child of ours, does not)."""
    if not pid:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own finished children
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall through to the signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def started_after(pid: int, moment: float) -> bool:
    """True if process `pid` began after `moment` (unix seconds), so it is not the worker
    that marked the run running but a newer process given the same pid (Linux /proc;
    False where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(float(line.split()[1]) for line in handle if line.startswith("btime"))
    except (OSError, IndexError, ValueError, StopIteration):
        return False
    return boot + ticks / os.sysconf("SC_CLK_TCK") > moment + PID_CLOCK_SLACK_S


def spawn_worker(store: RunStore, run_id: int, gpus: list[str] | None = None) -> int:
    """`python -m divebatch --db PATH worker RUN_ID` (see `spawn_process`); under
    `torch.distributed.run --nproc_per_node=N --standalone` when the run's config has
    nproc = N > 1; with CUDA_VISIBLE_DEVICES set to `gpus` when given."""
    nproc = store.get_run(run_id)["config"].get("nproc", 1)
    return spawn_process(store, ["worker", str(run_id)], f"run-{run_id}.log", nproc, gpus)


def spawn_process(store: RunStore, args: list[str], log_name: str, nproc: int = 1,
                  gpus: list[str] | None = None) -> int:
    """`python -m divebatch --db PATH ARGS` in its own session (it outlives the dashboard),
    with an argument list, never a shell, its output appended to `log_name` in the store's
    log folder (`log_folder`)."""
    log_dir = log_folder(store.path)
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


def log_folder(store_path: str | os.PathLike) -> Path:
    """The store's own folder of worker logs: `<store folder>/logs/<store file name>/` (two
    stores in one folder never share a log, and pruning one never deletes another's)."""
    store_path = Path(store_path).resolve()
    return store_path.parent / "logs" / store_path.name


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
    env.setdefault("OMP_NUM_THREADS", str(capacity.worker_threads()))
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
