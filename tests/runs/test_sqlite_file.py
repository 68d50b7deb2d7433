"""One SQLite file: WAL mode, transactions that commit whole or not at all, reads that never
wait for a writer, writes that wait out a lock past SQLite's busy timeout, and a clear error
when the lock outlasts `timeout`."""

import pickle
import sqlite3
import threading
import time

import pytest

from divebatch.runs import sqlite_file
from divebatch.runs.sqlite_file import SqliteFile


@pytest.fixture
def file(tmp_path):
    file = SqliteFile(tmp_path / "a" / "b.db")
    file.write(lambda db: db.execute("CREATE TABLE rows (value INTEGER)"))
    return file


def values(file):
    return [row[0] for row in file.read(lambda db: db.execute("SELECT value FROM rows").fetchall())]


def test_creates_its_folder_in_wal_mode(file):
    assert file.path.parent.is_dir() and file.path.is_absolute()
    with sqlite3.connect(file.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_write_commits_whole_or_not_at_all(file):
    file.write(lambda db: db.executemany("INSERT INTO rows VALUES (?)", [(1,), (2,)]))

    def half_then_fail(db):
        db.execute("INSERT INTO rows VALUES (3)")
        raise RuntimeError("in the middle")
    with pytest.raises(RuntimeError, match="in the middle"):
        file.write(half_then_fail)
    assert values(file) == [1, 2]


def test_integrity_check_and_vacuum(file):
    file.write(lambda db: db.executemany("INSERT INTO rows VALUES (?)", [(i,) for i in range(500)]))
    file.write(lambda db: db.execute("DELETE FROM rows"))
    file.vacuum()
    assert file.integrity_ok() and values(file) == []


def test_pickles_as_its_path(file):
    copy = pickle.loads(pickle.dumps(file))
    assert copy.path == file.path and copy.timeout == file.timeout


def hold_write_lock(path, seconds):
    """Another writer that keeps the write lock for `seconds` (released from a timer thread)."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(seconds, holder.execute, ("COMMIT",)).start()


def test_writes_wait_out_a_lock_longer_than_the_busy_timeout(file, monkeypatch):
    monkeypatch.setattr(sqlite_file, "BUSY_TIMEOUT_S", 0.05)  # so the retry loop is needed
    file.write(lambda db: db.execute("INSERT INTO rows VALUES (1)"))
    start = time.perf_counter()
    hold_write_lock(file.path, 0.4)
    assert values(file) == [1]  # readers never wait for the writer
    assert time.perf_counter() - start < 0.3
    file.write(lambda db: db.execute("INSERT INTO rows VALUES (2)"))
    assert time.perf_counter() - start >= 0.35
    assert values(file) == [1, 2]


def test_a_lock_held_past_the_timeout_is_reported(tmp_path):
    file = SqliteFile(tmp_path / "runs.db", timeout=0.2)
    file.write(lambda db: db.execute("CREATE TABLE rows (value INTEGER)"))
    hold_write_lock(file.path, 1.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        file.write(lambda db: db.execute("INSERT INTO rows VALUES (1)"))


def test_a_file_this_process_cannot_write_is_opened_read_only(file, monkeypatch):
    """A store on a read-only file system could not even be read ("unable to open database
    file"): such a file opens with mode=ro, reads work and writes fail."""
    file.write(lambda db: db.execute("INSERT INTO rows VALUES (7)"))
    monkeypatch.setattr(sqlite_file, "writable", lambda path: False)  # root writes anything
    read_only = SqliteFile(file.path)
    assert read_only.read_only and values(read_only) == [7]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        read_only.write(lambda db: db.execute("INSERT INTO rows VALUES (8)"))
    assert values(file) == [7]


def test_a_read_only_file_system_opens_the_file_as_immutable(file, monkeypatch):
    """There SQLite cannot create the WAL's shared memory, so mode=ro alone fails."""
    file.write(lambda db: db.execute("INSERT INTO rows VALUES (7)"))
    file.read(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
    monkeypatch.setattr(sqlite_file, "writable", lambda path: False)
    opened, open_uri = [], SqliteFile._open_uri

    def no_shared_memory(self, uri):
        opened.append(uri)
        if "immutable=1" not in uri:
            raise sqlite3.OperationalError("unable to open database file")
        return open_uri(self, uri)
    monkeypatch.setattr(SqliteFile, "_open_uri", no_shared_memory)
    read_only = SqliteFile(file.path)
    assert values(read_only) == [7] and values(read_only) == [7]
    assert [uri.split("?")[1] for uri in opened] == ["mode=ro", "mode=ro&immutable=1",
                                                    "mode=ro&immutable=1"]


def test_a_read_only_file_system_still_reads_a_dead_writers_wal(tmp_path, monkeypatch):
    """An immutable open ignores the WAL: a writer that died before checkpointing left its
    commits there, so the file is read from a copy beside its WAL instead."""
    writer = sqlite3.connect(tmp_path / "live.db", isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE rows (value INTEGER)")
    writer.execute("INSERT INTO rows VALUES (7)")
    frozen = tmp_path / "frozen"  # the files as the writer left them when it died
    frozen.mkdir()
    for name in ("live.db", "live.db-wal"):
        (frozen / name).write_bytes((tmp_path / name).read_bytes())
    writer.close()
    monkeypatch.setattr(sqlite_file, "writable", lambda path: False)
    opened, open_uri = [], SqliteFile._open_uri

    def no_shared_memory_in_frozen(self, uri):
        opened.append(uri)
        if str(frozen) in uri and "immutable=1" not in uri:
            raise sqlite3.OperationalError("unable to open database file")
        return open_uri(self, uri)
    monkeypatch.setattr(SqliteFile, "_open_uri", no_shared_memory_in_frozen)
    read_only = SqliteFile(frozen / "live.db")
    assert values(read_only) == [7] and values(read_only) == [7]
    assert not any("immutable=1" in uri for uri in opened)
    assert len({uri for uri in opened if str(frozen) not in uri}) == 1  # copied once
    assert sorted(p.name for p in frozen.iterdir()) == ["live.db", "live.db-wal"]
