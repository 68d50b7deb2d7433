"""The store's rows as plain dicts and back: JSON text (NaN and infinities kept), run rows
decoded, the checks and statements that writes of a run share, and the statements of the
store's transactions that take several steps, as functions of an open connection."""

from __future__ import annotations

import json
import operator
import sqlite3
import time
from collections.abc import Callable
from typing import Any

RUN_COLUMNS = ('id, name, grp AS "group", config, status, created_at, started_at, '
               'finished_at, error, worker_pid, info')


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} should be one of {', '.join(allowed)}, "
                         f"but got {name}={value!r}")


def epoch_of(record: dict) -> int:
    try:
        return operator.index(record["epoch"])
    except (KeyError, TypeError):
        raise ValueError(f"record should have an int 'epoch', "
                         f"but got epoch={record.get('epoch')!r}") from None


def check_config(config: Any) -> None:
    if not isinstance(config, dict):
        raise TypeError(f"config should be a dict (e.g. RunConfig.to_dict()), "
                        f"but got {type(config).__name__}")


def insert_run(db: sqlite3.Connection, config: dict, name: str, status: str, group: str,
               info: dict | None) -> int:
    return db.execute("INSERT INTO runs (name, grp, config, status, created_at, info) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (name, group, dumps(config), status, time.time(),
                       dumps(info or {}))).lastrowid


def require_run(db: sqlite3.Connection, run_id: int) -> None:
    if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
        raise KeyError(f"no run with id {run_id}")


def update_run(db: sqlite3.Connection, run_id: int, **columns: Any) -> None:
    """UPDATE the named columns (names from this module only); KeyError if no such run."""
    assignments = ", ".join(f"{column} = ?" for column in columns)
    cursor = db.execute(f"UPDATE runs SET {assignments} WHERE id = ?",
                        (*columns.values(), run_id))
    if cursor.rowcount == 0:
        raise KeyError(f"no run with id {run_id}")


def run_dict(row: sqlite3.Row) -> dict:
    return {**dict(row), "config": json.loads(row["config"]), "info": json.loads(row["info"])}


def with_payload(row: sqlite3.Row) -> dict:
    return {**dict(row), "payload": None if row["payload"] is None else json.loads(row["payload"])}


def dumps(value: Any) -> str:
    """JSON text; NaN and +-inf become the bare tokens NaN / Infinity that json.loads reads."""
    return json.dumps(value, allow_nan=True, default=_plain, separators=(",", ":"))


def dumps_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _plain(value: Any) -> Any:
    """numpy / torch scalars -> Python numbers (json.dumps calls this for unknown types)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")


# --- the statements of the store's transactions that take several steps (RunStore runs
# each inside one transaction: see its methods of the same purpose)

def claim_queued(db: sqlite3.Connection, choose: Callable[[list[dict], list[dict]], list[int]],
                 pid: int | None, worker_id: int | None) -> list[int]:
    """RunStore.claim_many's transaction."""
    running = [run_dict(row) for row in db.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running'")]
    queued = {run["id"]: run for run in (run_dict(row) for row in db.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' ORDER BY id"))}
    picked = [queued[run_id] for run_id in choose(running, list(queued.values()))
              if run_id in queued]
    for run in picked:
        update_run(db, run["id"], status="running", started_at=time.time(),
                   worker_pid=pid, info=dumps({**run["info"], "background": True}))
    if picked and worker_id is not None:
        db.execute("UPDATE workers SET run_id = ? WHERE id = ?",
                   (picked[0]["id"], worker_id))
    return [run["id"] for run in picked]


def requeue_run(db: sqlite3.Connection, run_id: int, keep_epochs: int,
                statuses: tuple[str, ...]) -> bool:
    """RunStore.requeue's transaction."""
    cursor = db.execute(
        f"UPDATE runs SET status = 'queued', error = NULL, finished_at = NULL, "
        f"worker_pid = NULL WHERE id = ? AND status IN ({', '.join('?' * len(statuses))})",
        (run_id, *statuses))
    if cursor.rowcount != 1:
        return False
    db.execute("DELETE FROM records WHERE run_id = ? AND epoch > ?",
               (run_id, keep_epochs))
    db.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
    db.execute("UPDATE controls SET consumed_at = ? WHERE run_id = ? "
               "AND consumed_at IS NULL", (time.time(), run_id))
    return True


def live_view_rows(db: sqlite3.Connection, ids: list[int]) -> tuple[list, ...]:
    """The rows RunStore.live_view reads, in one read transaction: runs, record counts,
    events and progress of the runs `ids`."""
    marks = ", ".join("?" * len(ids))
    db.execute("BEGIN")
    queries = (f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({marks})",
               f"SELECT run_id, COUNT(*), MAX(epoch) FROM records "
               f"WHERE run_id IN ({marks}) GROUP BY run_id",
               f"SELECT * FROM events WHERE run_id IN ({marks}) ORDER BY id",
               f"SELECT run_id, data, updated_at FROM progress WHERE run_id IN ({marks})")
    return tuple(db.execute(sql, ids).fetchall() for sql in queries)


def live_view_dict(ids: list[int], runs: list, counts: list, events: list,
                   progress: list) -> dict:
    """RunStore.live_view's dict from `live_view_rows`."""
    by_id = {row["id"]: run_dict(row) for row in runs}
    found = [run_id for run_id in ids if run_id in by_id]
    view = {"runs": [by_id[run_id] for run_id in found],
            "counts": {run_id: (0, 0) for run_id in found},
            "events": {run_id: [] for run_id in found},
            "progress": {run_id: None for run_id in found}}
    view["counts"].update((run_id, (count, last)) for run_id, count, last in counts)
    for row in events:  # one snapshot: a run's rows exist only while the run does
        view["events"][row["run_id"]].append(with_payload(row))
    for row in progress:
        view["progress"][row["run_id"]] = {**json.loads(row["data"]),
                                           "updated_at": row["updated_at"]}
    return view


def take_pending_controls(db: sqlite3.Connection, run_id: int) -> list[dict]:
    """RunStore.take_controls's transaction."""
    rows = db.execute("SELECT * FROM controls WHERE run_id = ? AND consumed_at IS NULL "
                      "ORDER BY id", (run_id,)).fetchall()
    now = time.time()
    db.execute("UPDATE controls SET consumed_at = ? WHERE run_id = ? "
               "AND consumed_at IS NULL", (now, run_id))
    return [{**with_payload(row), "consumed_at": now} for row in rows]
