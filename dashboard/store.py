"""Small helpers every page uses: the run store, run labels, plain-words status messages."""

from __future__ import annotations

import functools

import streamlit as st

from divebatch.runs import capacity, queue
from divebatch.report.tables import run_row
from divebatch.report.figures import run_label
from divebatch.report.queue_note import (paused_holders, paused_slots, queued_note,
                                          workers_line)
from divebatch.runs.store import ACTIVE_STATUSES, RunStore

from . import live_cache, roles



def open_store() -> RunStore:
    """The run store ($DIVEBATCH_DB or .divebatch/runs.db), opened once per file in this
    process (opening checks the schema: a millisecond of every viewer's update); a file made
    anew is opened anew. A RunStore holds only its path, so sessions share nothing mutable."""
    path = RunStore.default_path()
    try:
        file_id = path.stat().st_ino
    except OSError:
        file_id = None  # not made yet: opening makes it
    return _opened(str(path), file_id)


@functools.lru_cache(maxsize=16)
def _opened(path: str, file_id: int | None) -> RunStore:
    return RunStore(path)


def _slot_holders(store: RunStore) -> tuple[list[dict], dict[int, int]]:
    """(running runs, {run id: epoch} of the paused runs that hold worker slots), after
    marking runs of dead workers interrupted."""
    queue.reap(store)
    running = store.list_runs(status="running")
    progress = {run["id"]: store.get_progress(run["id"]) for run in running
                if run["info"].get("background") and run["worker_pid"]}
    return running, paused_holders(running, progress)


def workers_message(store: RunStore) -> str:
    """The sidebar's line: busy slots (naming paused runs that hold one), queued runs, and
    runs that a command line trains (they hold no slot). A run with nproc = N holds N
    slots."""
    running, paused = _slot_holders(store)
    return workers_line(capacity.background_busy(running), capacity.max_workers(),
                        len(store.list_runs(status="queued")), paused,
                        [run["id"] for run in running if not run["info"].get("background")])


def queue_message(store: RunStore, queued: list[int]) -> tuple[str, str]:
    """("info" or "warning", the line) saying why the `queued` run ids wait: the busy worker
    slots, and the paused runs that hold some (named, with what frees them)."""
    running, paused = _slot_holders(store)
    return queued_note(queued, capacity.background_busy(running), capacity.max_workers(),
                       paused, paused_slots(running, paused), can_change=roles.can_change())


def show_run_problems(runs: list[dict], store: RunStore, prefix: str = "") -> None:
    """st.error / st.warning / st.info in plain words for runs that need attention. Queued
    runs that paused runs keep waiting get a warning in a container keyed
    "<prefix>_queue_blocked" (with a `prefix`), which the scroll after a Start lands on
    (scroll_to_charts.js): the line is in view, just above the charts."""
    queued = [run["id"] for run in runs if run["status"] == "queued"]
    if queued:
        level, line = queue_message(store, queued)
        if level == "info":
            st.info(line)
        else:
            box = st.container(key=f"{prefix}_queue_blocked") if prefix else st.container()
            box.warning(line, icon=":material/pause_circle:")
    for run in runs:
        error = run.get("error") or "no details recorded"
        if run["status"] == "diverged":
            st.error(f"Run {run_label(run)} diverged: {error}")
        elif run["status"] == "failed":
            st.error(f"Run {run_label(run)} failed: {error}")
        elif run["status"] == "interrupted":
            st.warning(f"Run {run_label(run)} was interrupted: its worker process ended "
                       f"unexpectedly. The epochs recorded so far are kept.")


def run_rows(store: RunStore, runs: list[dict]) -> list[dict]:
    """Rows of the runs table. A finished run's records no longer change, so its row is
    computed once per session server (decoding 20,000 records took 0.3 s per page run);
    active runs' records come from the snapshot every viewer shares (new epochs decoded
    once per server)."""
    active_ids = [run["id"] for run in runs if run["status"] in ACTIVE_STATUSES]
    active = live_cache.snapshot(store, active_ids).records if active_ids else {}
    return [run_row(run, list(active[run["id"]])) if run["id"] in active
            else _finished_row(str(store.path), run) for run in runs]


@st.cache_data(max_entries=20_000, show_spinner=False)
def _finished_row(db_path: str, run: dict) -> dict:
    """Keyed by the whole run dict: a resumed run (new status, new finished_at) misses."""
    return run_row(run, RunStore(db_path).records(run["id"]))
