"""The embedded SQLite store (WAL) under ZLT_HOME: jobs, their history, and the artifact index.

Schema changes are ordered, uniquely numbered migrations recorded in `migrations`; they run when the
store opens. Append new ones at the end of MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from zlt.paths import db_path


def m001_jobs(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            state TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            started_at REAL,
            ended_at REAL,
            backend TEXT NOT NULL,
            profile TEXT,
            spec_json TEXT NOT NULL,
            options_json TEXT NOT NULL DEFAULT '{}',
            job_dir TEXT NOT NULL,
            gpus_needed INTEGER NOT NULL DEFAULT 1,
            gpus TEXT,
            worker_id TEXT,
            lease_expires REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_retries INTEGER NOT NULL DEFAULT 0,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            phase TEXT,
            progress_json TEXT,
            last_checkpoint TEXT,
            artifact_id TEXT,
            artifact_path TEXT,
            error_cause TEXT,
            error_message TEXT
        );
        CREATE INDEX jobs_queue ON jobs (state, priority DESC, created_at);
        CREATE TABLE job_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id),
            ts REAL NOT NULL,
            from_state TEXT,
            to_state TEXT NOT NULL,
            message TEXT
        );
        CREATE INDEX job_events_job ON job_events (job_id, id);
        """
    )


def m002_artifacts(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE artifacts (
            id TEXT PRIMARY KEY,
            job_id TEXT,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            created_at REAL NOT NULL,
            backend TEXT,
            spec_sha256 TEXT,
            dataset_sha256 TEXT,
            meta_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX artifacts_job ON artifacts (job_id);
        """
    )


def m003_job_runtime(db: sqlite3.Connection) -> None:
    """What the async worker needs: who runs a job (lease token, host, pid), resume bookkeeping, the
    submit-time snapshot, a listing index, and a table of live workers."""
    db.executescript(
        """
        ALTER TABLE jobs ADD COLUMN lease_token TEXT;
        ALTER TABLE jobs ADD COLUMN host TEXT;
        ALTER TABLE jobs ADD COLUMN runner_pid INTEGER;
        ALTER TABLE jobs ADD COLUMN runner_started REAL;
        ALTER TABLE jobs ADD COLUMN auto_retries INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN last_checkpoint_step INTEGER;
        ALTER TABLE jobs ADD COLUMN stop_reason TEXT;
        ALTER TABLE jobs ADD COLUMN snapshot_json TEXT NOT NULL DEFAULT '{}';
        CREATE INDEX jobs_created ON jobs (created_at DESC);
        CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('preparing', 'running');
        CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            gpus TEXT NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            stopped_at REAL
        );
        """
    )


def m010_artifact_versions(db: sqlite3.Connection) -> None:
    """Versions of one style (artifacts.name) form a line v0, v1, ...; each version names its parent and its
    lineage; promotions say which version a style name resolves to. Existing rows are numbered in creation order."""
    db.executescript(
        """
        ALTER TABLE artifacts ADD COLUMN version INTEGER;
        ALTER TABLE artifacts ADD COLUMN parent_id TEXT;
        ALTER TABLE artifacts ADD COLUMN lineage_json TEXT NOT NULL DEFAULT '{}';
        UPDATE artifacts SET version = (
            SELECT COUNT(*) FROM artifacts AS older
            WHERE older.name = artifacts.name
              AND (older.created_at < artifacts.created_at
                   OR (older.created_at = artifacts.created_at AND older.id < artifacts.id))
        );
        CREATE UNIQUE INDEX artifacts_style_version ON artifacts (name, version);
        CREATE TABLE artifact_promotions (
            style TEXT NOT NULL,
            seq INTEGER NOT NULL,
            artifact_id TEXT NOT NULL,
            previous_id TEXT,
            action TEXT NOT NULL,
            ts REAL NOT NULL,
            PRIMARY KEY (style, seq)
        );
        """
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_jobs", m001_jobs),
    ("m002_artifacts", m002_artifacts),
    ("m003_job_runtime", m003_job_runtime),
    ("m010_artifact_versions", m010_artifact_versions),
]


class _InTransaction:
    """Hands a migration the connection, but runs `executescript` statement by statement.

    sqlite3's own `executescript` COMMITs any open transaction first, which would split a migration
    from its `migrations` row; executing each statement keeps the whole migration one transaction.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def executescript(self, script: str) -> None:
        for statement in split_statements(script):
            self._db.execute(statement)


def split_statements(script: str) -> list[str]:
    """Complete SQL statements of a script, in order (CREATE TRIGGER bodies stay whole)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations, each in its own transaction. Returns the names applied."""
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {r[0] for r in db.execute("SELECT name FROM migrations")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the write lock.
            if db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                db.execute("ROLLBACK")
                continue
            fn(_InTransaction(db))  # type: ignore[arg-type]
            db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def connect(home: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    """Open (and migrate) the store. Autocommit mode: callers open transactions explicitly."""
    home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(db_path(home), timeout=timeout, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    migrate(db)
    return db
