"""The job table's schema: the ordered migrations of `jobs`, `job_events` and `workers`.

The job store and the artifact registry share one database (zlt.db: SQLite under ZLT_HOME or the PostgreSQL
server `ZLT_STORE` names) but each owns its tables and their migrations; the registry's live in
zlt.artifacts.tables. Numbers are unique across both lists (one `migrations` table records them by name): append
new ones at the end of MIGRATIONS, numbered after the highest of either list, and never edit one that has shipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.db.connect import connect as connect_db
from zlt.db.dialect import Database, Row
from zlt.db.migrate import Migration

__all__ = ["MIGRATIONS", "Database", "Row", "connect"]


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


def m011_job_kind(db: Any) -> None:
    """What a job asks a worker to do (zlt.core.kinds.JobKind) gets its own column. Until now generation and
    evaluation jobs were told apart by a `backend` of 'infer' / 'eval' (and a `kind` in their snapshot)."""
    db.executescript(
        """
        ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'train';
        UPDATE jobs SET kind = 'generate' WHERE backend = 'infer';
        UPDATE jobs SET kind = 'evaluate' WHERE backend = 'eval';
        """
    )


def m012_job_request(db: Any) -> None:
    """A generation or evaluation request gets its own column instead of `spec_json`, and `backend` holds only a
    real backend: both become NULL for jobs that are not trainings (SQLite cannot drop NOT NULL in place, so
    there the table is rebuilt, indexes included)."""
    db.executescript(
        """
        ALTER TABLE jobs ADD COLUMN request_json TEXT;
        UPDATE jobs SET request_json = spec_json WHERE kind <> 'train';
        """
    )
    if db.pg:
        db.executescript(
            """
            ALTER TABLE jobs ALTER COLUMN backend DROP NOT NULL;
            ALTER TABLE jobs ALTER COLUMN spec_json DROP NOT NULL;
            """
        )
    else:
        _rebuild_jobs_nullable(db, ("backend TEXT NOT NULL", "spec_json TEXT NOT NULL"))
    db.execute("UPDATE jobs SET backend = NULL, spec_json = NULL WHERE kind <> 'train'")


def _rebuild_jobs_nullable(db: Any, columns: tuple[str, ...]) -> None:
    """SQLite: the jobs table again, with `columns` (as declared) allowed to be NULL; rows and indexes kept."""
    (table_sql,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()
    indexes = [r[0] for r in db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' AND sql IS NOT NULL").fetchall()]
    new_sql = table_sql.replace("CREATE TABLE jobs", "CREATE TABLE jobs_rebuilt", 1)
    for declared in columns:
        if declared not in new_sql:
            raise RuntimeError(f"jobs table: column {declared!r} not found in {table_sql!r}")
        new_sql = new_sql.replace(declared, declared.removesuffix(" NOT NULL"), 1)
    db.execute(new_sql)
    db.execute("INSERT INTO jobs_rebuilt SELECT * FROM jobs")
    db.execute("DROP TABLE jobs")
    db.execute("ALTER TABLE jobs_rebuilt RENAME TO jobs")
    for sql in indexes:
        db.execute(sql)


MIGRATIONS: list[Migration] = [
    ("m001_jobs", m001_jobs),
    ("m003_job_runtime", m003_job_runtime),
    ("m004_shared_store", m004_shared_store),
    ("m011_job_kind", m011_job_kind),
    ("m012_job_request", m012_job_request),
]


def connect(home: Path, *, timeout: float = 30.0) -> Database:
    """Open the store with the job tables migrated. Autocommit mode: callers open transactions explicitly."""
    return connect_db(Path(home), MIGRATIONS, timeout=timeout)
