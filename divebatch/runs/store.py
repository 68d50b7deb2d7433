"""RunStore: the run history in one SQLite file, shared by workers, the CLI and the dashboard.

Runs (config, status, lifecycle times), one JSON record per epoch, a live progress row,
events (hot changes, divergence, errors) and control rows (stop / set requests to a worker).
Rows come back as plain dicts. Timestamps are unix seconds (`time.time()`). The tables and
their migrations are in `schema`.

The SQLite file itself (a connection per call, WAL, retries while locked) is `sqlite_file`;
rows as dicts and JSON are `store_rows`.

>>> import os, tempfile
>>> store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.db"))
>>> run_id = store.create_run({"method": "divebatch"}, name="demo")
>>> store.append_record(run_id, {"epoch": 1, "train_loss": float("nan"), "val_acc": None})
>>> store.records(run_id)
[{'epoch': 1, 'train_loss': nan, 'val_acc': None}]
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from divebatch.runs.schema import migrate, up_to_date
from divebatch.runs.sqlite_file import SqliteFile
from divebatch.runs.store_rows import (RUN_COLUMNS, check_choice, check_config, claim_queued,
                                       dumps, dumps_or_none, epoch_of, insert_run,
                                       live_view_dict, live_view_rows, require_run, requeue_run,
                                       run_dict, take_pending_controls, update_run,
                                       with_payload)

STATUSES = ("queued", "running", "completed", "stopped", "diverged", "failed", "interrupted")
FINISHED_STATUSES = ("completed", "stopped", "diverged", "failed", "interrupted")
ACTIVE_STATUSES = ("queued", "running")
# "set" payload: hot params, e.g. {"delta": 0.2}; "pace" payload: {"pace_s": 2.0};
# "pause" / "resume" / "step" (one more epoch, then paused again) act between epochs
CONTROL_KINDS = ("stop", "set", "pause", "resume", "step", "pace")

DEFAULT_PATH = Path(".divebatch") / "runs.db"  # under the working directory


class RunStore(SqliteFile):
    """Runs, epoch records, progress, events and controls in the SQLite file at `path`.

    Safe to share between threads and to use from several processes at once. `timeout` is
    how many seconds a call keeps retrying while another process holds the write lock.
    Writes to a run id that does not exist raise KeyError; reads return None or empty.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0):
        super().__init__(path, timeout=timeout)
        if not self.read(up_to_date):  # up to date: no write lock needed
            self.write(lambda db: migrate(db, self.path))

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    @staticmethod
    def default_path() -> Path:
        """$DIVEBATCH_DB if set, else .divebatch/runs.db under the working directory."""
        from_env = os.environ.get("DIVEBATCH_DB")
        return Path(from_env).expanduser() if from_env else Path.cwd() / DEFAULT_PATH

    # --- runs

    def create_run(self, config: dict, name: str = "", status: str = "queued",
                   group: str = "", info: dict | None = None) -> int:
        """Store a new run with its full config (and `info`, if given); returns its id."""
        check_choice("status", status, STATUSES)
        check_config(config)
        return self.write(lambda db: insert_run(db, config, name, status, group, info))

    def create_runs(self, configs: list[dict], names: list[str], group: str) -> list[int]:
        """Store several queued runs of one group in one transaction (a claimer sees all of
        them or none); returns their ids in order."""
        for config in configs:
            check_config(config)
        return self.write(lambda db: [insert_run(db, config, name, "queued", group, None)
                                      for config, name in zip(configs, names, strict=True)])

    def get_run(self, run_id: int) -> dict | None:
        """The run as a dict (config and info decoded), or None if there is no such run."""
        row = self.read(lambda db: db.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone())
        return None if row is None else run_dict(row)

    def list_runs(self, status: str | Iterable[str] | None = None, group: str | None = None,
                  limit: int | None = None) -> list[dict]:
        """Runs newest first, optionally only those with a status (or one of several
        statuses) and / or in a group, at most `limit` of them."""
        where, params = ["1"], []
        if status is not None:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            for one in statuses:
                check_choice("status", one, STATUSES)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if group is not None:
            where.append("grp = ?")
            params.append(group)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit should be an int >= 0 or None, but got limit={limit!r}")
        params.append(-1 if limit is None else limit)  # LIMIT -1: no limit
        sql = (f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)} "
               f"ORDER BY id DESC LIMIT ?")
        return [run_dict(row) for row in self.read(lambda db: db.execute(sql, params).fetchall())]

    def mark_running(self, run_id: int, pid: int) -> None:
        """A worker (process `pid`) has started the run."""
        self.write(lambda db: update_run(db, run_id, status="running", started_at=time.time(),
                                          finished_at=None, error=None, worker_pid=pid))

    def claim_run(self, run_id: int) -> bool:
        """queued -> running (no worker yet) if still queued; False if someone else won."""
        def claim(db: sqlite3.Connection) -> bool:
            cursor = db.execute("UPDATE runs SET status = 'running', started_at = ?, "
                                "worker_pid = NULL WHERE id = ? AND status = 'queued'",
                                (time.time(), run_id))
            return cursor.rowcount == 1
        return self.write(claim)

    def claim_next(self, choose: Callable[[list[dict], list[dict]], int | None],
                   pid: int | None = None, worker_id: int | None = None) -> int | None:
        """Atomically claim the queued run that `choose(running, queued)` names (running and
        queued runs as dicts, queued oldest first; None: claim nothing): see `claim_many`.
        Returns the run id or None."""
        def choose_one(running: list[dict], queued: list[dict]) -> list[int]:
            run_id = choose(running, queued)
            return [] if run_id is None else [run_id]
        claimed = self.claim_many(choose_one, pid, worker_id)
        return claimed[0] if claimed else None

    def claim_many(self, choose: Callable[[list[dict], list[dict]], list[int]],
                   pid: int | None = None, worker_id: int | None = None) -> list[int]:
        """Atomically claim the queued runs that `choose(running, queued)` names (running and
        queued runs as dicts, queued oldest first): they become running with worker `pid`
        (None until its dispatcher has started one) and info "background" set; warm worker
        `worker_id`, if given, records the first. Returns the ids claimed (those still queued).
        One write transaction: two claimers never take the same run, and `choose` sees every
        claim committed before its own (so it can enforce a limit on running runs)."""
        return self.write(lambda db: claim_queued(db, choose, pid, worker_id))

    def cancel_queued(self, run_id: int) -> bool:
        """queued -> stopped if still queued (it never started); False otherwise."""
        def cancel(db: sqlite3.Connection) -> bool:
            cursor = db.execute("UPDATE runs SET status = 'stopped', finished_at = ?, "
                                "error = 'cancelled before it started' "
                                "WHERE id = ? AND status = 'queued'", (time.time(), run_id))
            return cursor.rowcount == 1
        return self.write(cancel)

    def mark_finished(self, run_id: int, status: str, error: str | None = None) -> None:
        """The run ended with `status`: set finished_at, clear worker_pid and live progress."""
        check_choice("status", status, FINISHED_STATUSES)

        def finish(db: sqlite3.Connection) -> None:
            update_run(db, run_id, status=status, error=error, finished_at=time.time(),
                       worker_pid=None)
            db.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
        self.write(finish)

    def requeue(self, run_id: int, keep_epochs: int,
                statuses: Iterable[str] = ("interrupted", "failed", "stopped")) -> bool:
        """A run in one of `statuses` -> queued, dropping (in the same transaction) its records
        after epoch `keep_epochs`, its progress row and its pending controls, and clearing its
        error, end time and worker; False if it was not in one of `statuses`. Its info keeps
        its first start and the seconds of its earlier starts (first_started_at, earlier_s)."""
        for status in (statuses := tuple(statuses)):
            check_choice("status", status, FINISHED_STATUSES)
        def requeue_keeping_times(db: sqlite3.Connection) -> bool:
            run = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            requeued = requeue_run(db, run_id, keep_epochs, statuses)
            if requeued and run["started_at"] is not None:
                info, start = json.loads(run["info"]), run["started_at"]
                update_run(db, run_id, info=dumps({
                    **info, "first_started_at": info.get("first_started_at", start),
                    "earlier_s": info.get("earlier_s", 0) + (run["finished_at"] or start) - start}))
            return requeued
        return self.write(requeue_keeping_times)

    def set_status(self, run_id: int, status: str, error: str | None = None) -> None:
        """Set the status and the error text (None clears it); nothing else changes."""
        check_choice("status", status, STATUSES)
        self.write(lambda db: update_run(db, run_id, status=status, error=error))

    def update_info(self, run_id: int, **values: Any) -> None:
        """Merge `values` into the run's info dict (atomic: read and write in one transaction)."""
        def merge(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT info FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run with id {run_id}")
            update_run(db, run_id, info=dumps({**json.loads(row["info"]), **values}))
        self.write(merge)

    def delete_run(self, run_id: int) -> None:
        """Delete the run and all its records, progress, events and controls (no-op if absent)."""
        self.write(lambda db: db.execute("DELETE FROM runs WHERE id = ?", (run_id,)))

    # --- epoch records and live progress

    def append_record(self, run_id: int, record: dict) -> None:
        """Store one epoch's record (needs an int "epoch"); replaces that epoch's earlier one."""
        epoch = epoch_of(record)

        def insert(db: sqlite3.Connection) -> None:
            require_run(db, run_id)
            db.execute("INSERT OR REPLACE INTO records (run_id, epoch, data) VALUES (?, ?, ?)",
                       (run_id, epoch, dumps(record)))
        self.write(insert)

    def records(self, run_id: int) -> list[dict]:
        """The run's records by epoch ([] if none)."""
        return self.records_many([run_id])[run_id]

    def records_after(self, run_id: int, epoch: int) -> list[dict]:
        """The run's records of the epochs after `epoch`, by epoch (a live view's new rows)."""
        return self.records_after_many({run_id: epoch})[operator.index(run_id)]

    def records_many(self, run_ids: Iterable[int]) -> dict[int, list[dict]]:
        """{run_id: records by epoch} for several runs in one query; every id is a key."""
        ids = list(dict.fromkeys(operator.index(run_id) for run_id in run_ids))
        by_run: dict[int, list[dict]] = {run_id: [] for run_id in ids}
        if not ids:
            return by_run
        sql = (f"SELECT run_id, data FROM records WHERE run_id IN ({', '.join('?' * len(ids))}) "
               f"ORDER BY run_id, epoch")
        for run_id, data in self.read(lambda db: db.execute(sql, ids).fetchall()):
            by_run[run_id].append(json.loads(data))
        return by_run

    def records_after_many(self, after: dict[int, int]) -> dict[int, list[dict]]:
        """{run_id: its records of the epochs after after[run_id], by epoch} in one query
        (a live view's new rows of several runs); every id is a key."""
        by_run: dict[int, list[dict]] = {operator.index(run_id): [] for run_id in after}
        if not after:
            return by_run
        where = " OR ".join(["(run_id = ? AND epoch > ?)"] * len(after))
        params = [operator.index(value) for pair in after.items() for value in pair]
        sql = f"SELECT run_id, data FROM records WHERE {where} ORDER BY run_id, epoch"
        for run_id, data in self.read(lambda db: db.execute(sql, params).fetchall()):
            by_run[run_id].append(json.loads(data))
        return by_run

    def live_view(self, run_ids: Iterable[int]) -> dict:
        """What a live chart of these runs reads, in one read transaction (so all of it from
        the same moment), without decoding a record: {"runs": the existing runs' dicts, in
        the order asked, "counts": as record_counts, "events": {id: events, oldest first},
        "progress": {id: get_progress or None}}; the dicts have a key per existing run."""
        ids = list(dict.fromkeys(operator.index(run_id) for run_id in run_ids))
        rows = self.read(lambda db: live_view_rows(db, ids)) if ids else ([], [], [], [])
        return live_view_dict(ids, *rows)

    def record_counts(self, run_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """{run_id: (number of records, last epoch)} in one query, without decoding any
        record: a cheap way to see whether a run's records changed. (0, 0) if none."""
        ids = list(dict.fromkeys(operator.index(run_id) for run_id in run_ids))
        counts = {run_id: (0, 0) for run_id in ids}
        if ids:
            sql = (f"SELECT run_id, COUNT(*), MAX(epoch) FROM records WHERE run_id IN "
                   f"({', '.join('?' * len(ids))}) GROUP BY run_id")
            for run_id, count, last in self.read(lambda db: db.execute(sql, ids).fetchall()):
                counts[run_id] = (count, last)
        return counts

    def set_progress(self, run_id: int, progress: dict) -> None:
        """Replace the run's live mid-epoch progress row."""
        def upsert(db: sqlite3.Connection) -> None:
            require_run(db, run_id)
            db.execute("INSERT OR REPLACE INTO progress (run_id, data, updated_at) "
                       "VALUES (?, ?, ?)", (run_id, dumps(progress), time.time()))
        self.write(upsert)

    def get_progress(self, run_id: int) -> dict | None:
        """The last progress dict plus "updated_at", or None (none yet, or run finished)."""
        row = self.read(lambda db: db.execute(
            "SELECT data, updated_at FROM progress WHERE run_id = ?", (run_id,)).fetchone())
        return None if row is None else {**json.loads(row["data"]), "updated_at": row["updated_at"]}

    def set_tour(self, page: str, state: dict | None) -> None:
        """Replace the guided tour of `page` (its run and step); None ends it."""
        def write(db: sqlite3.Connection) -> None:
            if state is None:
                db.execute("DELETE FROM tours WHERE page = ?", (page,))
            else:
                db.execute("INSERT OR REPLACE INTO tours (page, data, updated_at) "
                           "VALUES (?, ?, ?)", (page, dumps(state), time.time()))
        self.write(write)

    def get_tour(self, page: str) -> dict | None:
        """The guided tour of `page` under way, or None."""
        row = self.read(lambda db: db.execute(
            "SELECT data FROM tours WHERE page = ?", (page,)).fetchone())
        return None if row is None else json.loads(row["data"])

    # --- events and controls

    def add_event(self, run_id: int, kind: str, message: str, epoch: int | None = None,
                  payload: Any = None) -> int:
        """Log what happened to the run (hot change, divergence, error); returns its id."""
        def insert(db: sqlite3.Connection) -> int:
            require_run(db, run_id)
            return db.execute(
                "INSERT INTO events (run_id, epoch, kind, message, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, epoch, kind, message, dumps_or_none(payload), time.time())).lastrowid
        return self.write(insert)

    def events(self, run_id: int) -> list[dict]:
        """The run's events, oldest first."""
        rows = self.read(lambda db: db.execute(
            "SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,)).fetchall())
        return [with_payload(row) for row in rows]

    def send_control(self, run_id: int, kind: str, payload: dict | None = None) -> int:
        """Queue a request for the run's worker ("stop", or "set" with hot params); its id."""
        check_choice("kind", kind, CONTROL_KINDS)

        def insert(db: sqlite3.Connection) -> int:
            require_run(db, run_id)
            return db.execute(
                "INSERT INTO controls (run_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                (run_id, kind, dumps_or_none(payload), time.time())).lastrowid
        return self.write(insert)

    def take_controls(self, run_id: int) -> list[dict]:
        """Pending controls oldest first, marked consumed in the same transaction, so each
        control is handed to exactly one caller."""
        if not self.read(lambda db: db.execute(
                "SELECT 1 FROM controls WHERE run_id = ? AND consumed_at IS NULL LIMIT 1",
                (run_id,)).fetchone()):
            return []  # the common case costs a read, not the write lock
        return self.write(lambda db: take_pending_controls(db, run_id))

    # --- warm workers

    def reserve_worker(self, pool: int) -> int | None:
        """A new warm-worker row (pid still unknown) if fewer than `pool` rows exist; its id.
        Atomic, so dispatchers in several processes never start more than `pool`."""
        def reserve(db: sqlite3.Connection) -> int | None:
            if db.execute("SELECT count(*) FROM workers").fetchone()[0] >= pool:
                return None
            return db.execute("INSERT INTO workers (created_at) VALUES (?)",
                              (time.time(),)).lastrowid
        return self.write(reserve)

    def update_worker(self, worker_id: int, **columns: Any) -> bool:
        """Set pid, ready_at and / or run_id of a warm worker; False if its row is gone."""
        unknown = set(columns) - {"pid", "ready_at", "run_id"}
        if unknown:
            raise ValueError(f"worker columns are pid, ready_at, run_id, but got "
                             f"{', '.join(sorted(unknown))}")
        assignments = ", ".join(f"{column} = ?" for column in columns)
        return self.write(lambda db: db.execute(
            f"UPDATE workers SET {assignments} WHERE id = ?",
            (*columns.values(), worker_id)).rowcount == 1)

    def workers(self) -> list[dict]:
        """Warm-worker rows (id, pid, created_at, ready_at, run_id), oldest first."""
        rows = self.read(lambda db: db.execute("SELECT * FROM workers ORDER BY id").fetchall())
        return [dict(row) for row in rows]

    def remove_worker(self, worker_id: int) -> None:
        self.write(lambda db: db.execute("DELETE FROM workers WHERE id = ?", (worker_id,)))

    # --- maintenance

    def delete_runs(self, *, status: str | Iterable[str] | None = None,
                    older_than: float | None = None, keep: int = 0) -> list[int]:
        """Delete finished runs with all their rows, in one transaction; returns their ids.

        status: only runs with this status (or one of these); default every finished status
        (queued and running runs are never deleted). older_than: only runs created more than
        this many seconds ago. keep: spare the newest `keep` of the runs that match.
        Call `vacuum()` afterwards to give the space back to the file system.
        """
        statuses = FINISHED_STATUSES if status is None else (
            (status,) if isinstance(status, str) else tuple(status))
        for one in statuses:
            check_choice("status", one, FINISHED_STATUSES)
        if not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep should be an int >= 0, but got keep={keep!r}")
        if older_than is not None and not older_than >= 0:
            raise ValueError(f"older_than should be seconds >= 0, but got "
                             f"older_than={older_than!r}")
        cutoff = float("inf") if older_than is None else time.time() - older_than
        select = (f"SELECT id FROM runs WHERE status IN ({', '.join('?' * len(statuses))}) "
                  f"AND created_at < ? ORDER BY id DESC LIMIT -1 OFFSET ?")

        def delete(db: sqlite3.Connection) -> list[int]:
            ids = [row[0] for row in db.execute(select, (*statuses, cutoff, keep))]
            db.executemany("DELETE FROM runs WHERE id = ?", [(run_id,) for run_id in ids])
            return ids
        return self.write(delete)

