"""The job store's database: SQLite under ZLT_HOME by default, or a shared PostgreSQL server.

`ZLT_STORE=postgresql://...` (or `store = "postgresql://..."` in the user config) selects PostgreSQL;
otherwise the store is `<ZLT_HOME>/zlt.db` (SQLite, WAL). Both run the same numbered migrations and the
same queries: they are written once, with `?` placeholders, in the SQL both dialects share; `Database`
translates the few spellings that differ (see `zlt.jobs.dialect`). Schema changes are ordered, uniquely
numbered migrations recorded in `migrations`; they run when the store opens. Append new ones at the end
of MIGRATIONS in portable SQL (TEXT, INTEGER, REAL, `INTEGER PRIMARY KEY AUTOINCREMENT`); never edit one
that has shipped.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt.core.paths import db_path
from zlt.jobs.dialect import Database, Row, split_statements, sqlite_database

__all__ = ["MIGRATIONS", "Database", "Row", "connect", "migrate", "split_statements", "store_url"]


def m001_jobs(db: Any) -> None:
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


def m002_artifacts(db: Any) -> None:
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


def m003_job_runtime(db: Any) -> None:
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


def m004_shared_store(db: Any) -> None:
    """Many workers on many hosts: GPU memory per job and per worker GPU, infrastructure faults counted
    apart from the spec's retry budget (with a backoff), and hosts that cannot see a job's files."""
    db.executescript(
        """
        ALTER TABLE jobs ADD COLUMN min_vram_gb REAL;
        ALTER TABLE jobs ADD COLUMN infra_retries INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN not_before REAL;
        ALTER TABLE jobs ADD COLUMN refused_hosts TEXT NOT NULL DEFAULT '';
        ALTER TABLE workers ADD COLUMN gpu_info TEXT NOT NULL DEFAULT '[]';
        CREATE INDEX workers_live ON workers (heartbeat_at) WHERE stopped_at IS NULL;
        """
    )


def m010_artifact_versions(db: Any) -> None:
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


MIGRATIONS: list[tuple[str, Callable[[Any], None]]] = [
    ("m001_jobs", m001_jobs),
    ("m002_artifacts", m002_artifacts),
    ("m003_job_runtime", m003_job_runtime),
    ("m004_shared_store", m004_shared_store),
    ("m010_artifact_versions", m010_artifact_versions),
]


class _InTransaction:
    """Hands a migration the connection, but runs `executescript` statement by statement.

    sqlite3's own `executescript` COMMITs any open transaction first, which would split a migration
    from its `migrations` row; executing each statement keeps the whole migration one transaction (on
    PostgreSQL, DDL is transactional too).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def execute(self, sql: str, params: tuple = ()) -> Any:
        return self._db.execute(self._db.ddl(sql), params)

    def executescript(self, script: str) -> None:
        for statement in split_statements(script):
            self._db.execute(self._db.ddl(statement))


def migrate(db: Database | sqlite3.Connection) -> list[str]:
    """Apply pending migrations, each in its own transaction. Returns the names applied."""
    if isinstance(db, sqlite3.Connection):
        db = Database(db, "sqlite")
    fast = _pending(db)
    if fast is not None and not fast:
        return []
    db.execute("BEGIN IMMEDIATE")
    try:
        db.lock_migrations()
        db.execute(db.ddl("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"))
        db.execute("COMMIT")
    except BaseException:
        db.rollback_quietly()
        raise
    applied = []
    for name, fn in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.lock_migrations()
            # Another process may have applied it while we waited for the lock.
            if db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                db.execute("ROLLBACK")
                continue
            fn(_InTransaction(db))
            db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
            db.execute("COMMIT")
        except BaseException:
            db.rollback_quietly()
            raise
        applied.append(name)
    return applied


def _pending(db: Database) -> list[str] | None:
    """Migrations not yet applied, read without a write lock (None: no migrations table yet)."""
    if not db.table_exists("migrations"):
        return None
    done = {r[0] for r in db.execute("SELECT name FROM migrations").fetchall()}
    return [n for n, _ in MIGRATIONS if n not in done]


def store_url(home: Path | None = None) -> str | None:
    """The PostgreSQL URL the store lives at, or None for the embedded SQLite file.

    `ZLT_STORE` beats `store` in the user config; `ZLT_STORE=sqlite` forces SQLite.
    """
    value = os.environ.get("ZLT_STORE", "").strip()
    if not value:
        value = _config_store() or ""
    if not value or value.lower() in ("sqlite", "default"):
        return None
    if not value.startswith(("postgresql://", "postgres://")):
        from zlt.core.errors import BadInputError

        raise BadInputError(f"ZLT_STORE={value!r}: not a PostgreSQL URL",
                            hint="use postgresql://user@host:5432/dbname, or unset it for the SQLite store")
    return value


def _config_store() -> str | None:
    """`store` from the user config, read with tomllib alone so `zlt status` stays fast."""
    from zlt.core.paths import user_config_path

    p = user_config_path()
    if not p.is_file():
        return None
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        value = tomllib.loads(p.read_text(encoding="utf-8")).get("store")
    except (OSError, ValueError):
        return None  # the full loader reports a broken config where it is used
    return value if isinstance(value, str) else None


def connect(home: Path, *, timeout: float = 30.0) -> Database:
    """Open (and migrate) the store. Autocommit mode: callers open transactions explicitly."""
    url = store_url(home)
    if url is not None:
        from zlt.jobs.pg import pg_database

        db = pg_database(url, timeout=timeout)
    else:
        home.mkdir(parents=True, exist_ok=True)
        db = sqlite_database(db_path(home), timeout=timeout)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db
