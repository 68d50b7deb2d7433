"""Run groups: the planned runs of a sweep or a reproduction, matched to stored runs.

A group is a set of stored runs sharing a group name. A stored run *is* a planned run when
it is in the group and its config equals the planned config (the name aside), so a re-run of
the same plan reuses every finished run, continues the stopped, failed or interrupted ones
from their checkpoints and trains the missing ones.
The plans themselves (which configs, and what their results mean) are the experiments'
(`divebatch.experiments.sweeps`, `divebatch.experiments.reproduce`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Hashable

from divebatch.config import RunConfig
from divebatch.runs.store import ACTIVE_STATUSES

FINISHED = ("completed", "diverged")   # final results: reused by a re-run
# Which run stands for a planned run, best first (active ones: neither redone nor counted yet).
STATUS_PREFERENCE = FINISHED + ACTIVE_STATUSES


@dataclass(frozen=True)
class PlannedRun:
    cell: Hashable          # the grid cell (a sweep: (delta, B_max, R) or its baseline)
    seed: int
    config: RunConfig       # with a descriptive name; the name is not part of identity


def identity(config: dict | RunConfig) -> str | None:
    """Canonical text of a config without its name (None if it is not a valid RunConfig)."""
    if isinstance(config, RunConfig):
        values = config.to_dict()
    else:
        try:
            values = RunConfig.from_dict(config).to_dict()  # fills fields added since
        except (TypeError, ValueError):
            return None
    values.pop("name")
    return json.dumps(values, sort_keys=True)


def match_runs(store, group: str, planned: list[PlannedRun]) -> list[dict | None]:
    """For each planned run, the stored run of `group` that stands for it, or None.

    Finished runs win over queued / running ones, which win over stopped or failed ones;
    among equals the newest wins.
    """
    by_identity: dict[str, list[dict]] = {}
    for run in store.list_runs(group=group):  # newest first
        by_identity.setdefault(identity(run["config"]), []).append(run)

    def rank(run: dict) -> int:
        status = run["status"]
        return STATUS_PREFERENCE.index(status) if status in STATUS_PREFERENCE else 99

    return [min(by_identity.get(identity(p.config), []), key=rank, default=None)
            for p in planned]


def missing(planned: list[PlannedRun], matched: list[dict | None]) -> list[PlannedRun]:
    """Planned runs with no finished or in-progress run: what a (re-)run must do."""
    return [p for p, _ in missing_with_runs(planned, matched)]


def missing_with_runs(planned: list[PlannedRun], matched: list[dict | None]
                      ) -> list[tuple[PlannedRun, dict | None]]:
    """`missing`, each with its stopped, failed or interrupted stored run (None: none)."""
    return [(p, run) for p, run in zip(planned, matched)
            if run is None or run["status"] not in FINISHED + ACTIVE_STATUSES]


def progress(matched: list[dict | None]) -> dict:
    """Counts of the planned runs by state: finished, running, queued, to do, and total."""
    statuses = [run["status"] if run else None for run in matched]
    return {"finished": sum(s in FINISHED for s in statuses),
            "running": statuses.count("running"), "queued": statuses.count("queued"),
            "to_do": sum(s not in FINISHED + ACTIVE_STATUSES for s in statuses),
            "total": len(statuses)}


def missing_in_store(store, group: str, planned: list[PlannedRun]
                     ) -> list[tuple[PlannedRun, dict | None]]:
    """`missing_with_runs` for the runs `group` holds now, once runs whose worker died
    (a sweep killed mid-run leaves them running) are marked interrupted (`queue.reap`)."""
    from divebatch.runs.queue import reap
    reap(store)
    return missing_with_runs(planned, match_runs(store, group, planned))


def queued_run(store, group: str, planned: PlannedRun, stale: dict | None) -> int:
    """The queued stored run that trains `planned`: `stale` (its stopped, failed or
    interrupted run) queued again to continue from its checkpoint, so that a re-run after
    Ctrl-C or Stop leaves no partial run beside a fresh one; else a new run (also where
    `stale`'s checkpoint is not its own: that run is then kept as it is). Both backends, here
    and on Ray, take their runs from here."""
    from divebatch.runs.queue import RESUMABLE_STATUSES, requeue_to_resume
    if stale is not None and stale["status"] in RESUMABLE_STATUSES:
        try:
            requeue_to_resume(store, stale["id"])
            return stale["id"]
        except ValueError:  # a checkpoint that is not the run's
            pass
    return store.create_run(planned.config.to_dict(), name=planned.config.name, group=group)


def submit_missing(store, group: str, planned: list[PlannedRun], info: dict | None = None
                   ) -> list[int]:
    """Queue every missing planned run for the background workers (`queued_run`); their ids."""
    from divebatch.runs.queue import dispatch
    ids = []
    for p, stale in missing_in_store(store, group, planned):
        run_id = queued_run(store, group, p, stale)
        dispatch(store)
        if info:
            store.update_info(run_id, **info)
        ids.append(run_id)
    return ids


def run_missing(store, group: str, planned: list[PlannedRun], info: dict | None = None,
                on_run_done: Callable[[PlannedRun, dict], None] | None = None) -> int:
    """Train every missing planned run here, one after the other; returns how many ran.

    Each run is stored and claimed (so no background dispatcher starts it too) before it
    trains. A KeyboardInterrupt marks the run in progress as stopped, keeping its records,
    and propagates: a later call continues that run from its checkpoint (`queued_run`) and
    trains the ones after it.
    """
    from divebatch.runs.worker import execute_run
    done = 0
    for p, stale in missing_in_store(store, group, planned):
        run_id = queued_run(store, group, p, stale)
        if not store.claim_run(run_id):
            continue  # a background dispatcher took it: it trains there
        if info:
            store.update_info(run_id, **info)
        try:
            execute_run(store, run_id)
        except KeyboardInterrupt:
            store.mark_finished(run_id, "stopped", "interrupted from the keyboard")
            raise
        done += 1
        if on_run_done:
            on_run_done(p, store.get_run(run_id))
    return done


def stop_group(store, group: str) -> list[int]:
    """Stop the group's running runs and cancel its queued ones; their ids."""
    from divebatch.runs.control_requests import request_stop
    active = store.list_runs(status=ACTIVE_STATUSES, group=group)
    for run in active:
        request_stop(store, run["id"])
    return [run["id"] for run in active]


def specs_in_store(store, prefix: str, info_key: str, from_dict, limit: int = 500) -> list:
    """Specs of the groups named `prefix...` found in the store, newest first, read from the
    spec each of their runs keeps in its info under `info_key`."""
    found: dict = {}
    for run in store.list_runs(limit=limit):
        group = run["group"]
        if group.startswith(prefix) and group not in found and info_key in run["info"]:
            try:
                found[group] = from_dict(run["info"][info_key])
            except (KeyError, TypeError, ValueError):
                continue
    return list(found.values())
