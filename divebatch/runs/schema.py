"""The run store's SQLite schema, as numbered migrations, and the step that applies them.

A store file records its schema version in `PRAGMA user_version`; `migrate` takes it from
there to the newest, inside the caller's write transaction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# MIGRATIONS[v] takes the schema from version v to v + 1 (kept in PRAGMA user_version).
# To change the schema, append a tuple of statements; never edit one that has shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL DEFAULT '',
            grp TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL,            -- JSON object: the RunConfig fields
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            worker_pid INTEGER,
            info TEXT NOT NULL DEFAULT '{}'  -- JSON object: facts learnt while running
        )""",
        "CREATE INDEX runs_by_status ON runs (status, id)",
        "CREATE INDEX runs_by_group ON runs (grp, id)",
        """CREATE TABLE records (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            epoch INTEGER NOT NULL,
            data TEXT NOT NULL,              -- JSON object: one epoch's numbers
            PRIMARY KEY (run_id, epoch)
        ) WITHOUT ROWID""",
        """CREATE TABLE progress (
            run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            epoch INTEGER,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            payload TEXT,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX events_by_run ON events (run_id, id)",
        """CREATE TABLE controls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            payload TEXT,
            created_at REAL NOT NULL,
            consumed_at REAL
        )""",
        "CREATE INDEX controls_pending ON controls (run_id, id) WHERE consumed_at IS NULL",
    ),
    (
        """CREATE TABLE workers (            -- warm worker processes waiting for queued runs
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            pid INTEGER,                     -- NULL while its dispatcher is starting it
            created_at REAL NOT NULL,
            ready_at REAL,                   -- when it had imported torch and began to wait
            run_id INTEGER                   -- the run it trains now; NULL while idle
        )""",
    ),
    (
        """CREATE TABLE tours (               -- a page's guided tour, which the class follows
            page TEXT PRIMARY KEY,
            data TEXT NOT NULL,              -- JSON object: the run toured and the step shown
            updated_at REAL NOT NULL
        )""",
    ),
    (
        """CREATE TABLE measurements (       -- work that branches from a stored run's checkpoints
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,              -- what is measured: critical_batch
            settings TEXT NOT NULL,          -- JSON object: the measurement's settings
            status TEXT NOT NULL,            -- as a run's: queued, running, completed, ...
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            worker_pid INTEGER,
            stop_requested INTEGER NOT NULL DEFAULT 0,
            progress TEXT                    -- JSON object: rows done, rows planned, now
        )""",
        "CREATE INDEX measurements_by_run ON measurements (run_id, id)",
        """CREATE TABLE measurement_rows (
            measurement_id INTEGER NOT NULL REFERENCES measurements (id) ON DELETE CASCADE,
            epoch INTEGER NOT NULL,          -- the checkpoint branched from
            batch_size INTEGER NOT NULL,     -- the branch's; 0: the checkpoint's own facts
            data TEXT NOT NULL,              -- JSON object
            PRIMARY KEY (measurement_id, epoch, batch_size)
        ) WITHOUT ROWID""",
    ),
)


def schema_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def up_to_date(db: sqlite3.Connection) -> bool:
    return schema_version(db) == len(MIGRATIONS)


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create or upgrade the tables of the store at `path` to the newest schema version."""
    version = schema_version(db)  # again: another process may have just migrated
    if version > len(MIGRATIONS):
        raise RuntimeError(f"{path} has schema version {version}, newer than this "
                           f"divebatch understands ({len(MIGRATIONS)}); upgrade divebatch")
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
