"""The artifact registry's tables (`artifacts`, `artifact_promotions`) and their ordered migrations.

The registry shares the job store's database (zlt.db) but owns these tables; the jobs' own live in zlt.jobs.db,
and the two refer to each other by id only (`artifacts.job_id`, `jobs.artifact_id`). Migration numbers are unique
across both lists (one `migrations` table records them by name): append new ones at the end of MIGRATIONS, numbered
after the highest of either list, and never edit one that has shipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.db.connect import connect as connect_db
from zlt.db.dialect import Database
from zlt.db.migrate import Migration


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


MIGRATIONS: list[Migration] = [
    ("m002_artifacts", m002_artifacts),
    ("m010_artifact_versions", m010_artifact_versions),
]


def connect(home: Path, *, timeout: float = 30.0) -> Database:
    """Open the store with the registry's tables migrated. Autocommit mode: callers open transactions explicitly."""
    return connect_db(Path(home), MIGRATIONS, timeout=timeout)
