"""The runner of ordered, uniquely numbered migrations, recorded by name in the `migrations` table.

An owner of tables (zlt.jobs.db, zlt.artifacts.tables) keeps its own list and hands it to `migrate`; the lists
share the one `migrations` table and one number space (`mNNN_name`), so a store created when every migration lived
in one list recognises the ones it already applied. Write migrations in portable SQL (TEXT, INTEGER, REAL,
`INTEGER PRIMARY KEY AUTOINCREMENT`); never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from zlt.db.dialect import Database, split_statements

Migration = tuple[str, Callable[[Any], None]]


class InTransaction:
    """Hands a migration the connection, but runs `executescript` statement by statement.

    sqlite3's own `executescript` COMMITs any open transaction first, which would split a migration
    from its `migrations` row; executing each statement keeps the whole migration one transaction (on
    PostgreSQL, DDL is transactional too). `pg` lets a migration spell what the dialects cannot share.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self.pg = db.pg

    def execute(self, sql: str, params: tuple = ()) -> Any:
        return self._db.execute(self._db.ddl(sql), params)

    def executescript(self, script: str) -> None:
        for statement in split_statements(script):
            self._db.execute(self._db.ddl(statement))


def migrate(db: Database | sqlite3.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply the pending ones of `migrations`, each in its own transaction. Returns the names applied."""
    if isinstance(db, sqlite3.Connection):
        db = Database(db, "sqlite")
    fast = pending(db, migrations)
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
    for name, fn in migrations:
        # A migration may rebuild a table others refer to (SQLite cannot drop NOT NULL in place); SQLite
        # enforces foreign keys only outside a transaction's reach, so it is off while a migration runs and
        # the references are checked before the migration commits.
        db.foreign_keys(False)
        try:
            if _apply(db, name, fn):
                applied.append(name)
        finally:
            db.foreign_keys(True)
    return applied


def _apply(db: Database, name: str, fn: Callable[[Any], None]) -> bool:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.lock_migrations()
        # Another process may have applied it while we waited for the lock.
        if db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
            db.execute("ROLLBACK")
            return False
        fn(InTransaction(db))
        if not db.pg and db.execute("PRAGMA foreign_key_check").fetchone() is not None:
            raise sqlite3.IntegrityError(f"migration {name} left rows whose references point nowhere")
        db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
        db.execute("COMMIT")
    except BaseException:
        db.rollback_quietly()
        raise
    return True


def pending(db: Database, migrations: Sequence[Migration]) -> list[str] | None:
    """Names of `migrations` not yet applied, read without a write lock (None: no migrations table yet)."""
    if not db.table_exists("migrations"):
        return None
    done = {r[0] for r in db.execute("SELECT name FROM migrations").fetchall()}
    return [n for n, _ in migrations if n not in done]
