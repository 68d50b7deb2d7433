"""Measurements stored with the run they branch from (the critical batch size): their own two
tables in the run store's file (`schema`, version 3), read and written through the store's
transactions, so they share its locking and retries, and vanish with their run.

A measurement has a status like a run's (queued, running, completed, stopped, failed,
interrupted), a worker pid, a stop flag the worker reads between branches, a progress row, and
result rows keyed (epoch, batch size), so a resumed measurement skips the rows it has.

>>> import os, tempfile
>>> store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.db"))
>>> run_id = store.create_run({"method": "sgd"}, status="completed")
>>> measurements = Measurements(store)
>>> mid = measurements.create(run_id, "critical_batch", {"lr_rule": "run"})
>>> measurements.put_row(mid, 5, 32, {"steps_to_target": 12.5})
>>> [(row["epoch"], row["batch_size"], row["data"]) for row in measurements.rows(mid)]
[(5, 32, {'steps_to_target': 12.5})]
"""

from __future__ import annotations

import json
import time

from divebatch.runs.store import RunStore

COLUMNS = ("id, run_id, kind, settings, status, created_at, started_at, finished_at, error, "
           "worker_pid, stop_requested, progress")
RESUMABLE = ("stopped", "failed", "interrupted")


class Measurements:
    """The measurements of one store (a thin view over its file; holds only the store)."""

    def __init__(self, store: RunStore):
        self.store = store

    def create(self, run_id: int, kind: str, settings: dict) -> int:
        def insert(db) -> int:
            return db.execute(
                "INSERT INTO measurements (run_id, kind, settings, status, created_at) "
                "VALUES (?, ?, ?, 'queued', ?)",
                (run_id, kind, json.dumps(settings), time.time())).lastrowid
        return self.store.write(insert)

    def get(self, measurement_id: int) -> dict | None:
        row = self.store.read(lambda db: db.execute(
            f"SELECT {COLUMNS} FROM measurements WHERE id = ?", (measurement_id,)).fetchone())
        return _measurement(row) if row else None

    def of_run(self, run_id: int, kind: str | None = None) -> list[dict]:
        """The run's measurements, newest first."""
        rows = self.store.read(lambda db: db.execute(
            f"SELECT {COLUMNS} FROM measurements WHERE run_id = ? ORDER BY id DESC",
            (run_id,)).fetchall())
        return [_measurement(row) for row in rows if kind in (None, row["kind"])]

    def running(self) -> list[dict]:
        rows = self.store.read(lambda db: db.execute(
            f"SELECT {COLUMNS} FROM measurements WHERE status = 'running'").fetchall())
        return [_measurement(row) for row in rows]

    def mark_running(self, measurement_id: int, pid: int) -> None:
        self._update(measurement_id, status="running", worker_pid=pid, started_at=time.time(),
                     finished_at=None, error=None)

    def mark_finished(self, measurement_id: int, status: str, error: str | None = None) -> None:
        self._update(measurement_id, status=status, finished_at=time.time(), error=error)

    def requeue(self, measurement_id: int) -> bool:
        """Back to queued (stop flag cleared) if stopped, failed or interrupted."""
        def requeue(db) -> bool:
            return db.execute(
                "UPDATE measurements SET status = 'queued', stop_requested = 0, error = NULL, "
                f"worker_pid = NULL WHERE id = ? AND status IN {RESUMABLE}",
                (measurement_id,)).rowcount == 1
        return self.store.write(requeue)

    def request_stop(self, measurement_id: int) -> None:
        self._update(measurement_id, stop_requested=1)

    def stop_requested(self, measurement_id: int) -> bool:
        return bool(self.store.read(lambda db: db.execute(
            "SELECT stop_requested FROM measurements WHERE id = ?",
            (measurement_id,)).fetchone()[0]))

    def set_progress(self, measurement_id: int, progress: dict) -> None:
        self._update(measurement_id, progress=json.dumps(progress))

    def put_row(self, measurement_id: int, epoch: int, batch_size: int, data: dict) -> None:
        self.store.write(lambda db: db.execute(
            "INSERT OR REPLACE INTO measurement_rows VALUES (?, ?, ?, ?)",
            (measurement_id, epoch, batch_size, json.dumps(data, allow_nan=True))))

    def rows(self, measurement_id: int) -> list[dict]:
        found = self.store.read(lambda db: db.execute(
            "SELECT epoch, batch_size, data FROM measurement_rows WHERE measurement_id = ? "
            "ORDER BY epoch, batch_size", (measurement_id,)).fetchall())
        return [{"epoch": row["epoch"], "batch_size": row["batch_size"],
                 "data": json.loads(row["data"])} for row in found]

    def _update(self, measurement_id: int, **columns) -> None:
        names = ", ".join(f"{name} = ?" for name in columns)
        self.store.write(lambda db: db.execute(
            f"UPDATE measurements SET {names} WHERE id = ?", (*columns.values(), measurement_id)))


def _measurement(row) -> dict:
    return {**dict(row), "settings": json.loads(row["settings"]),
            "progress": json.loads(row["progress"]) if row["progress"] else None,
            "stop_requested": bool(row["stop_requested"])}
