"""RunStore: the run history in one SQLite file, shared by workers, the CLI and the dashboard.

Runs (config, status, lifecycle times), one JSON record per epoch, a live progress row,
events (hot changes, divergence, errors) and control rows (stop / set requests to a worker).
Rows come back as plain dicts. Timestamps are unix seconds (`time.time()`). The tables and
their migrations are in `schema`.

Concurrency design (several writer processes, the dashboard polling every 0.5 s, Streamlit
script threads sharing one RunStore object):

- WAL journal with `synchronous=NORMAL`: readers never wait for the writer nor block it,
  and a commit costs no fsync (a power cut may lose the last commits, never corrupt the file).
- A fresh connection for every call: nothing is shared between threads or inherited across
  a fork, a failed call cannot leave an open transaction behind for the next one, and a
  RunStore holds only its path, so it pickles (multiprocessing "spawn"). Opening is cheap
  (tens of microseconds) because one idle connection per process keeps the WAL files open
  (see `_hold_open`).
- Every write is one `BEGIN IMMEDIATE` transaction: it takes the write lock first, so the
  busy timeout covers it and read-modify-write steps (`update_info`, `take_controls`) are
  atomic across processes.
- "database is locked" / "busy" that outlasts SQLite's busy timeout is retried with jittered
  exponential backoff, for up to `timeout` seconds in all.

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
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from divebatch.runs.schema import migrate, up_to_date

STATUSES = ("queued", "running", "completed", "stopped", "diverged", "failed", "interrupted")
FINISHED_STATUSES = ("completed", "stopped", "diverged", "failed", "interrupted")
ACTIVE_STATUSES = ("queued", "running")
# "set" payload: hot params, e.g. {"delta": 0.2}; "pace" payload: {"pace_s": 2.0};
# "pause" / "resume" / "step" (one more epoch, then paused again) act between epochs
CONTROL_KINDS = ("stop", "set", "pause", "resume", "step", "pace")

BUSY_TIMEOUT_S = 5.0  # SQLite's own wait for a lock, per attempt; retries go on up to `timeout`
DEFAULT_PATH = Path(".divebatch") / "runs.db"  # under the working directory

RUN_COLUMNS = ('id, name, grp AS "group", config, status, created_at, started_at, '
               'finished_at, error, worker_pid, info')

# One idle connection per (process, file): see _hold_open.
_anchors: dict[tuple[int, str], sqlite3.Connection] = {}
_anchors_lock = threading.Lock()


def _new_anchors_lock() -> None:
    """A forked child must not inherit the lock held by a thread that did not come along."""
    global _anchors_lock
    _anchors_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_anchors_lock)


class RunStore:
    """Runs, epoch records, progress, events and controls in the SQLite file at `path`.

    Safe to share between threads and to use from several processes at once. `timeout` is
    how many seconds a call keeps retrying while another process holds the write lock.
    Writes to a run id that does not exist raise KeyError; reads return None or empty.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0):
        self.path = Path(path).expanduser().resolve()
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._read(up_to_date):  # up to date: no write lock needed
            self._write(lambda db: migrate(db, self.path))

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
        _check_choice("status", status, STATUSES)
        _check_config(config)
        return self._write(lambda db: _insert_run(db, config, name, status, group, info))

    def create_runs(self, configs: list[dict], names: list[str], group: str) -> list[int]:
        """Store several queued runs of one group in one transaction (a claimer sees all of
        them or none); returns their ids in order."""
        for config in configs:
            _check_config(config)
        return self._write(lambda db: [_insert_run(db, config, name, "queued", group, None)
                                       for config, name in zip(configs, names, strict=True)])

    def get_run(self, run_id: int) -> dict | None:
        """The run as a dict (config and info decoded), or None if there is no such run."""
        row = self._read(lambda db: db.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone())
        return None if row is None else _run_dict(row)

    def list_runs(self, status: str | Iterable[str] | None = None, group: str | None = None,
                  limit: int | None = None) -> list[dict]:
        """Runs newest first, optionally only those with a status (or one of several
        statuses) and / or in a group, at most `limit` of them."""
        where, params = ["1"], []
        if status is not None:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            for one in statuses:
                _check_choice("status", one, STATUSES)
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
        return [_run_dict(row) for row in self._read(lambda db: db.execute(sql, params).fetchall())]

    def mark_running(self, run_id: int, pid: int) -> None:
        """A worker (process `pid`) has started the run."""
        self._write(lambda db: _update_run(db, run_id, status="running", started_at=time.time(),
                                           finished_at=None, error=None, worker_pid=pid))

    def claim_run(self, run_id: int) -> bool:
        """queued -> running (no worker yet) if still queued; False if someone else won."""
        def claim(db: sqlite3.Connection) -> bool:
            cursor = db.execute("UPDATE runs SET status = 'running', started_at = ?, "
                                "worker_pid = NULL WHERE id = ? AND status = 'queued'",
                                (time.time(), run_id))
            return cursor.rowcount == 1
        return self._write(claim)

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
        def claim(db: sqlite3.Connection) -> list[int]:
            running = [_run_dict(row) for row in db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running'")]
            queued = {run["id"]: run for run in (_run_dict(row) for row in db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' ORDER BY id"))}
            picked = [queued[run_id] for run_id in choose(running, list(queued.values()))
                      if run_id in queued]
            for run in picked:
                _update_run(db, run["id"], status="running", started_at=time.time(),
                            worker_pid=pid, info=_dumps({**run["info"], "background": True}))
            if picked and worker_id is not None:
                db.execute("UPDATE workers SET run_id = ? WHERE id = ?",
                           (picked[0]["id"], worker_id))
            return [run["id"] for run in picked]
        return self._write(claim)

    def cancel_queued(self, run_id: int) -> bool:
        """queued -> stopped if still queued (it never started); False otherwise."""
        def cancel(db: sqlite3.Connection) -> bool:
            cursor = db.execute("UPDATE runs SET status = 'stopped', finished_at = ?, "
                                "error = 'cancelled before it started' "
                                "WHERE id = ? AND status = 'queued'", (time.time(), run_id))
            return cursor.rowcount == 1
        return self._write(cancel)

    def mark_finished(self, run_id: int, status: str, error: str | None = None) -> None:
        """The run ended with `status`: set finished_at, clear worker_pid and live progress."""
        _check_choice("status", status, FINISHED_STATUSES)

        def finish(db: sqlite3.Connection) -> None:
            _update_run(db, run_id, status=status, error=error, finished_at=time.time(),
                        worker_pid=None)
            db.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
        self._write(finish)

    def requeue(self, run_id: int, keep_epochs: int,
                statuses: Iterable[str] = ("interrupted", "failed", "stopped")) -> bool:
        """A run in one of `statuses` -> queued, dropping (in the same transaction) its records
        after epoch `keep_epochs`, its progress row and its pending controls, and clearing its
        error, end time and worker; False if it was not in one of `statuses`."""
        statuses = tuple(statuses)
        for status in statuses:
            _check_choice("status", status, FINISHED_STATUSES)

        def requeue(db: sqlite3.Connection) -> bool:
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
        return self._write(requeue)

    def set_status(self, run_id: int, status: str, error: str | None = None) -> None:
        """Set the status and the error text (None clears it); nothing else changes."""
        _check_choice("status", status, STATUSES)
        self._write(lambda db: _update_run(db, run_id, status=status, error=error))

    def update_info(self, run_id: int, **values: Any) -> None:
        """Merge `values` into the run's info dict (atomic: read and write in one transaction)."""
        def merge(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT info FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run with id {run_id}")
            _update_run(db, run_id, info=_dumps({**json.loads(row["info"]), **values}))
        self._write(merge)

    def delete_run(self, run_id: int) -> None:
        """Delete the run and all its records, progress, events and controls (no-op if absent)."""
        self._write(lambda db: db.execute("DELETE FROM runs WHERE id = ?", (run_id,)))

    # --- epoch records and live progress

    def append_record(self, run_id: int, record: dict) -> None:
        """Store one epoch's record (needs an int "epoch"); replaces that epoch's earlier one."""
        epoch = _epoch_of(record)

        def insert(db: sqlite3.Connection) -> None:
            _require_run(db, run_id)
            db.execute("INSERT OR REPLACE INTO records (run_id, epoch, data) VALUES (?, ?, ?)",
                       (run_id, epoch, _dumps(record)))
        self._write(insert)

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
        for run_id, data in self._read(lambda db: db.execute(sql, ids).fetchall()):
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
        for run_id, data in self._read(lambda db: db.execute(sql, params).fetchall()):
            by_run[run_id].append(json.loads(data))
        return by_run

    def live_view(self, run_ids: Iterable[int]) -> dict:
        """What a live chart of these runs reads, in one read transaction (so all of it from
        the same moment), without decoding a record: {"runs": the existing runs' dicts, in
        the order asked, "counts": as record_counts, "events": {id: events, oldest first},
        "progress": {id: get_progress or None}}; the dicts have a key per existing run."""
        ids = list(dict.fromkeys(operator.index(run_id) for run_id in run_ids))
        marks = ", ".join("?" * len(ids))

        def read(db: sqlite3.Connection) -> tuple[list, ...]:
            db.execute("BEGIN")
            queries = (f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({marks})",
                       f"SELECT run_id, COUNT(*), MAX(epoch) FROM records "
                       f"WHERE run_id IN ({marks}) GROUP BY run_id",
                       f"SELECT * FROM events WHERE run_id IN ({marks}) ORDER BY id",
                       f"SELECT run_id, data, updated_at FROM progress WHERE run_id IN ({marks})")
            return tuple(db.execute(sql, ids).fetchall() for sql in queries)
        runs, counts, events, progress = self._read(read) if ids else ([], [], [], [])
        by_id = {row["id"]: _run_dict(row) for row in runs}
        found = [run_id for run_id in ids if run_id in by_id]
        view = {"runs": [by_id[run_id] for run_id in found],
                "counts": {run_id: (0, 0) for run_id in found},
                "events": {run_id: [] for run_id in found},
                "progress": {run_id: None for run_id in found}}
        view["counts"].update((run_id, (count, last)) for run_id, count, last in counts)
        for row in events:  # one snapshot: a run's rows exist only while the run does
            view["events"][row["run_id"]].append(_with_payload(row))
        for row in progress:
            view["progress"][row["run_id"]] = {**json.loads(row["data"]),
                                               "updated_at": row["updated_at"]}
        return view

    def record_counts(self, run_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """{run_id: (number of records, last epoch)} in one query, without decoding any
        record: a cheap way to see whether a run's records changed. (0, 0) if none."""
        ids = list(dict.fromkeys(operator.index(run_id) for run_id in run_ids))
        counts = {run_id: (0, 0) for run_id in ids}
        if ids:
            sql = (f"SELECT run_id, COUNT(*), MAX(epoch) FROM records WHERE run_id IN "
                   f"({', '.join('?' * len(ids))}) GROUP BY run_id")
            for run_id, count, last in self._read(lambda db: db.execute(sql, ids).fetchall()):
                counts[run_id] = (count, last)
        return counts

    def set_progress(self, run_id: int, progress: dict) -> None:
        """Replace the run's live mid-epoch progress row."""
        def upsert(db: sqlite3.Connection) -> None:
            _require_run(db, run_id)
            db.execute("INSERT OR REPLACE INTO progress (run_id, data, updated_at) "
                       "VALUES (?, ?, ?)", (run_id, _dumps(progress), time.time()))
        self._write(upsert)

    def get_progress(self, run_id: int) -> dict | None:
        """The last progress dict plus "updated_at", or None (none yet, or run finished)."""
        row = self._read(lambda db: db.execute(
            "SELECT data, updated_at FROM progress WHERE run_id = ?", (run_id,)).fetchone())
        return None if row is None else {**json.loads(row["data"]), "updated_at": row["updated_at"]}

    def set_tour(self, page: str, state: dict | None) -> None:
        """Replace the guided tour of `page` (its run and step); None ends it."""
        def write(db: sqlite3.Connection) -> None:
            if state is None:
                db.execute("DELETE FROM tours WHERE page = ?", (page,))
            else:
                db.execute("INSERT OR REPLACE INTO tours (page, data, updated_at) "
                           "VALUES (?, ?, ?)", (page, _dumps(state), time.time()))
        self._write(write)

    def get_tour(self, page: str) -> dict | None:
        """The guided tour of `page` under way, or None."""
        row = self._read(lambda db: db.execute(
            "SELECT data FROM tours WHERE page = ?", (page,)).fetchone())
        return None if row is None else json.loads(row["data"])

    # --- events and controls

    def add_event(self, run_id: int, kind: str, message: str, epoch: int | None = None,
                  payload: Any = None) -> int:
        """Log what happened to the run (hot change, divergence, error); returns its id."""
        def insert(db: sqlite3.Connection) -> int:
            _require_run(db, run_id)
            return db.execute(
                "INSERT INTO events (run_id, epoch, kind, message, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, epoch, kind, message, _dumps_or_none(payload), time.time())).lastrowid
        return self._write(insert)

    def events(self, run_id: int) -> list[dict]:
        """The run's events, oldest first."""
        rows = self._read(lambda db: db.execute(
            "SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,)).fetchall())
        return [_with_payload(row) for row in rows]

    def send_control(self, run_id: int, kind: str, payload: dict | None = None) -> int:
        """Queue a request for the run's worker ("stop", or "set" with hot params); its id."""
        _check_choice("kind", kind, CONTROL_KINDS)

        def insert(db: sqlite3.Connection) -> int:
            _require_run(db, run_id)
            return db.execute(
                "INSERT INTO controls (run_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                (run_id, kind, _dumps_or_none(payload), time.time())).lastrowid
        return self._write(insert)

    def take_controls(self, run_id: int) -> list[dict]:
        """Pending controls oldest first, marked consumed in the same transaction, so each
        control is handed to exactly one caller."""
        if not self._read(lambda db: db.execute(
                "SELECT 1 FROM controls WHERE run_id = ? AND consumed_at IS NULL LIMIT 1",
                (run_id,)).fetchone()):
            return []  # the common case costs a read, not the write lock

        def take(db: sqlite3.Connection) -> list[dict]:
            rows = db.execute("SELECT * FROM controls WHERE run_id = ? AND consumed_at IS NULL "
                              "ORDER BY id", (run_id,)).fetchall()
            now = time.time()
            db.execute("UPDATE controls SET consumed_at = ? WHERE run_id = ? "
                       "AND consumed_at IS NULL", (now, run_id))
            return [{**_with_payload(row), "consumed_at": now} for row in rows]
        return self._write(take)

    # --- warm workers

    def reserve_worker(self, pool: int) -> int | None:
        """A new warm-worker row (pid still unknown) if fewer than `pool` rows exist; its id.
        Atomic, so dispatchers in several processes never start more than `pool`."""
        def reserve(db: sqlite3.Connection) -> int | None:
            if db.execute("SELECT count(*) FROM workers").fetchone()[0] >= pool:
                return None
            return db.execute("INSERT INTO workers (created_at) VALUES (?)",
                              (time.time(),)).lastrowid
        return self._write(reserve)

    def update_worker(self, worker_id: int, **columns: Any) -> bool:
        """Set pid, ready_at and / or run_id of a warm worker; False if its row is gone."""
        unknown = set(columns) - {"pid", "ready_at", "run_id"}
        if unknown:
            raise ValueError(f"worker columns are pid, ready_at, run_id, but got "
                             f"{', '.join(sorted(unknown))}")
        assignments = ", ".join(f"{column} = ?" for column in columns)
        return self._write(lambda db: db.execute(
            f"UPDATE workers SET {assignments} WHERE id = ?",
            (*columns.values(), worker_id)).rowcount == 1)

    def workers(self) -> list[dict]:
        """Warm-worker rows (id, pid, created_at, ready_at, run_id), oldest first."""
        rows = self._read(lambda db: db.execute("SELECT * FROM workers ORDER BY id").fetchall())
        return [dict(row) for row in rows]

    def remove_worker(self, worker_id: int) -> None:
        self._write(lambda db: db.execute("DELETE FROM workers WHERE id = ?", (worker_id,)))

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
            _check_choice("status", one, FINISHED_STATUSES)
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
        return self._write(delete)

    def integrity_ok(self) -> bool:
        """True when SQLite's integrity check finds nothing wrong."""
        rows = self._read(lambda db: db.execute("PRAGMA integrity_check").fetchall())
        return [row[0] for row in rows] == ["ok"]

    def vacuum(self) -> None:
        """Rebuild the file to reclaim the space of deleted runs. In WAL mode the rebuilt
        pages go to the WAL first: the checkpoint moves them into the file and truncates
        both (as far as readers active at that moment allow)."""
        self._call(lambda db: db.execute("VACUUM"))
        self._call(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

    # --- plumbing

    def read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """work(connection) as `_read` runs it: for the tables of this file that other modules
        keep (runs/measurements.py), which then share its locking and retries."""
        return self._read(work)

    def write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """work(connection) as one write transaction (see `read`)."""
        return self._write(work)

    def _connect(self) -> sqlite3.Connection:
        """A new connection for one call (autocommit: transactions are explicit)."""
        _hold_open(str(self.path), self.timeout)
        db = sqlite3.connect(self.path, timeout=min(BUSY_TIMEOUT_S, self.timeout),
                             isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _call(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """work(connection) on a fresh connection, retried with backoff while locked."""
        deadline, attempt = time.monotonic() + self.timeout, 0
        while True:
            try:
                db = self._connect()
                try:
                    return work(db)
                finally:
                    db.close()  # rolls back a transaction that did not commit
            except sqlite3.OperationalError as error:
                if not _is_locked(error) or time.monotonic() >= deadline:
                    raise
            pause = min(0.5, 0.01 * 2 ** attempt) * random.uniform(0.5, 1.5)
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            attempt += 1

    def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a read; each statement sees one consistent snapshot and never waits for writers."""
        return self._call(work)

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run work(connection) as one transaction that holds the write lock from its start."""
        def transaction(db: sqlite3.Connection) -> Any:
            db.execute("BEGIN IMMEDIATE")
            result = work(db)
            db.execute("COMMIT")
            return result
        return self._call(transaction)


def _hold_open(path: str, timeout: float) -> None:
    """Keep one idle connection per process and file, and put the file in WAL mode.

    When the last connection to a WAL database closes, SQLite checkpoints it and deletes the
    WAL; with a connection per call that would cost about 1 ms and an fsync on every call.
    An idle connection that has read the file keeps the WAL open; it holds no lock, so it
    never blocks writers or checkpoints. Connections inherited through a fork are left alone.
    """
    key = (os.getpid(), path)
    with _anchors_lock:
        if key in _anchors:
            return
        anchor = sqlite3.connect(path, timeout=min(BUSY_TIMEOUT_S, timeout),
                                 check_same_thread=False)
        try:
            anchor.execute("PRAGMA journal_mode = WAL").fetchall()  # stored in the file
            anchor.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.Error:
            anchor.close()
            raise
        _anchors[key] = anchor


def _is_locked(error: sqlite3.OperationalError) -> bool:
    """Is this SQLITE_BUSY / SQLITE_LOCKED ("database is locked"), worth retrying?"""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    message = str(error).lower()
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in message \
        or "busy" in message


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} should be one of {', '.join(allowed)}, "
                         f"but got {name}={value!r}")


def _epoch_of(record: dict) -> int:
    try:
        return operator.index(record["epoch"])
    except (KeyError, TypeError):
        raise ValueError(f"record should have an int 'epoch', "
                         f"but got epoch={record.get('epoch')!r}") from None


def _check_config(config: Any) -> None:
    if not isinstance(config, dict):
        raise TypeError(f"config should be a dict (e.g. RunConfig.to_dict()), "
                        f"but got {type(config).__name__}")


def _insert_run(db: sqlite3.Connection, config: dict, name: str, status: str, group: str,
                info: dict | None) -> int:
    return db.execute("INSERT INTO runs (name, grp, config, status, created_at, info) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (name, group, _dumps(config), status, time.time(),
                       _dumps(info or {}))).lastrowid


def _require_run(db: sqlite3.Connection, run_id: int) -> None:
    if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
        raise KeyError(f"no run with id {run_id}")


def _update_run(db: sqlite3.Connection, run_id: int, **columns: Any) -> None:
    """UPDATE the named columns (names from this module only); KeyError if no such run."""
    assignments = ", ".join(f"{column} = ?" for column in columns)
    cursor = db.execute(f"UPDATE runs SET {assignments} WHERE id = ?",
                        (*columns.values(), run_id))
    if cursor.rowcount == 0:
        raise KeyError(f"no run with id {run_id}")


def _run_dict(row: sqlite3.Row) -> dict:
    return {**dict(row), "config": json.loads(row["config"]), "info": json.loads(row["info"])}


def _with_payload(row: sqlite3.Row) -> dict:
    return {**dict(row), "payload": None if row["payload"] is None else json.loads(row["payload"])}


def _dumps(value: Any) -> str:
    """JSON text; NaN and +-inf become the bare tokens NaN / Infinity that json.loads reads."""
    return json.dumps(value, allow_nan=True, default=_plain, separators=(",", ":"))


def _dumps_or_none(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _plain(value: Any) -> Any:
    """numpy / torch scalars -> Python numbers (json.dumps calls this for unknown types)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")
