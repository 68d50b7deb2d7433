"""One SQLite file shared by several processes and threads: a connection per call, WAL,
transactions that take the write lock first, and retries while another process holds it.

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
- A file this process cannot write (a read-only file system or folder, a file without write
  permission) is opened read-only (`read_only`): reads work, writes raise
  sqlite3.OperationalError. On a read-only file system SQLite cannot create the WAL's shared
  memory file, so the file is then opened as immutable (nothing can change it there). An
  immutable open ignores the WAL, so where a writer died without checkpointing (a `-wal` file
  beside it with commits in it) the file and its WAL are first copied to a private temporary
  folder, where SQLite reads both: the same snapshot, no commit lost.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

BUSY_TIMEOUT_S = 5.0  # SQLite's own wait for a lock, per attempt; retries go on up to `timeout`

# One idle connection per (process, file): see _hold_open.
_anchors: dict[tuple[int, str], sqlite3.Connection] = {}
_anchors_lock = threading.Lock()


def _new_anchors_lock() -> None:
    """A forked child must not inherit the lock held by a thread that did not come along."""
    global _anchors_lock
    _anchors_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_anchors_lock)


class SqliteFile:
    """The SQLite file at `path`: `read(work)` and `write(work)` run work(connection) on a
    fresh connection, `write` as one transaction. `timeout` is how many seconds a call keeps
    retrying while another process holds the write lock."""

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0):
        self.path = Path(path).expanduser().resolve()
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.read_only = self.path.exists() and not writable(self.path)
        self._read_only_uri: str | None = None  # mode=ro, or immutable where that fails

    def _connect(self) -> sqlite3.Connection:
        """A new connection for one call (autocommit: transactions are explicit)."""
        if self.read_only:
            db = self._connect_read_only()
        else:
            _hold_open(str(self.path), self.timeout)
            db = sqlite3.connect(self.path, timeout=min(BUSY_TIMEOUT_S, self.timeout),
                                 isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection: `mode=ro`, or `immutable=1` where SQLite cannot open the
        WAL's shared memory (a read-only file system); the one that worked is kept."""
        base = _read_only_uri(self.path)
        if self._read_only_uri is None:
            try:
                return self._open_uri(base)
            except sqlite3.OperationalError:
                wal = self.path.with_name(self.path.name + "-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    return self._open_uri(_read_only_uri(_copy_with_wal(self.path, wal)))
                return self._open_uri(base + "&immutable=1")
        return self._open_uri(self._read_only_uri)

    def _open_uri(self, uri: str) -> sqlite3.Connection:
        db = sqlite3.connect(uri, uri=True, timeout=min(BUSY_TIMEOUT_S, self.timeout),
                             isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.Error:
            db.close()
            raise
        self._read_only_uri = uri
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

    def read(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run work(connection) as a read; each statement sees one consistent snapshot and
        never waits for writers."""
        return self._call(work)

    def write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run work(connection) as one transaction that holds the write lock from its start."""
        def transaction(db: sqlite3.Connection) -> Any:
            db.execute("BEGIN IMMEDIATE")
            result = work(db)
            db.execute("COMMIT")
            return result
        return self._call(transaction)

    def integrity_ok(self) -> bool:
        """True when SQLite's integrity check finds nothing wrong."""
        rows = self.read(lambda db: db.execute("PRAGMA integrity_check").fetchall())
        return [row[0] for row in rows] == ["ok"]

    def vacuum(self) -> None:
        """Rebuild the file to reclaim the space of deleted runs. In WAL mode the rebuilt
        pages go to the WAL first: the checkpoint moves them into the file and truncates
        both (as far as readers active at that moment allow)."""
        self._call(lambda db: db.execute("VACUUM"))
        self._call(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())


def _read_only_uri(path: Path) -> str:
    return "file:" + quote(str(path)) + "?mode=ro"


def _copy_with_wal(path: Path, wal: Path) -> Path:
    """A copy of the file and its WAL in a private temporary folder (removed at exit), where
    SQLite can make the shared memory it needs to read the WAL."""
    folder = Path(tempfile.mkdtemp(prefix="divebatch-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / path.name
    shutil.copyfile(path, copy)
    shutil.copyfile(wal, folder / wal.name)
    return copy


def writable(path: Path) -> bool:
    """Can this process write the file at `path` and create files beside it (the WAL's)?
    A read-only file system says no even to root."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


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
