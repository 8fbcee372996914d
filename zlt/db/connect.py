"""Where the store lives and how it is opened: SQLite under ZLT_HOME by default, or a shared PostgreSQL server.

`ZLT_STORE=postgresql://...` (or `store = "postgresql://..."` in the user config) selects PostgreSQL;
otherwise the store is `<ZLT_HOME>/zlt.db` (SQLite, WAL). Both run the same migrations and the same queries
(zlt.db.dialect translates the few spellings that differ).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from zlt.core.errors import BadInputError
from zlt.core.paths import db_path, user_config_path
from zlt.db.dialect import Database, sqlite_database
from zlt.db.migrate import Migration, migrate
from zlt.db.pg import pg_database

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


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
        raise BadInputError(f"ZLT_STORE={value!r}: not a PostgreSQL URL",
                            hint="use postgresql://user@host:5432/dbname, or unset it for the SQLite store")
    return value


def _config_store() -> str | None:
    """`store` from the user config, read with tomllib alone so `zlt status` stays fast."""
    p = user_config_path()
    if not p.is_file():
        return None
    try:
        value = tomllib.loads(p.read_text(encoding="utf-8")).get("store")
    except (OSError, ValueError):
        return None  # the full loader reports a broken config where it is used
    return value if isinstance(value, str) else None


def open_database(home: Path, *, timeout: float = 30.0) -> Database:
    """The store's database as it is, without migrating it."""
    url = store_url(home)
    if url is not None:
        return pg_database(url, timeout=timeout)
    home.mkdir(parents=True, exist_ok=True)
    return sqlite_database(db_path(home), timeout=timeout)


def connect(home: Path, migrations: Sequence[Migration], *, timeout: float = 30.0) -> Database:
    """Open the store and apply the pending ones of `migrations`. Autocommit mode: callers open transactions
    explicitly."""
    db = open_database(home, timeout=timeout)
    try:
        migrate(db, migrations)
    except BaseException:
        db.close()
        raise
    return db
