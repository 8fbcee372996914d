"""PostgreSQL connections for the store (jobs and artifact registry): one psycopg_pool pool per URL and process.

psycopg is imported only here, only when `ZLT_STORE` names a PostgreSQL server, so the SQLite default
and `zlt --help` never pay for it. A pooled connection is checked before it is handed out, so a worker
that outlives a database restart reconnects instead of failing its next claim.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from zlt.core.errors import EnvNotReadyError
from zlt.db.dialect import Database, Row

_pools: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()


def _row_factory(cursor: Any) -> Any:
    names = [c.name for c in cursor.description] if cursor.description else []
    return lambda values: Row(zip(names, values, strict=True))


def _configure(conn: Any) -> None:
    conn.autocommit = True
    conn.row_factory = _row_factory


def _pool(url: str, timeout: float) -> Any:
    key = (url, os.getpid())  # a forked child must not share its parent's sockets
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            try:  # lazy: psycopg only when a PostgreSQL store is named
                import psycopg  # noqa: F401
                from psycopg_pool import ConnectionPool
            except ImportError:
                raise EnvNotReadyError("ZLT_STORE names a PostgreSQL server but psycopg is not installed",
                                       hint="pip install 'zlt[postgres]'") from None
            pool = ConnectionPool(url, min_size=1, max_size=int(os.environ.get("ZLT_STORE_POOL", "8")),
                                  configure=_configure, check=ConnectionPool.check_connection,
                                  kwargs={"connect_timeout": max(1, int(timeout))}, timeout=timeout,
                                  name="zlt-store", open=False)
            pool.open(wait=False)
            _pools[key] = pool
            atexit.register(pool.close)
    return pool


def pg_database(url: str, *, timeout: float = 30.0) -> Database:
    from psycopg_pool import PoolTimeout  # lazy: psycopg only when a PostgreSQL store is named

    pool = _pool(url, timeout)
    try:
        conn = pool.getconn(timeout=timeout)
    except PoolTimeout as e:
        raise EnvNotReadyError(f"cannot reach the job store at {redact(url)} ({e})",
                               hint="check that PostgreSQL runs and ZLT_STORE is right") from None
    return Database(conn, "postgresql", release=lambda: pool.putconn(conn))


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def close_pools() -> None:
    """Close every pool this process opened (tests switch servers; a long-lived caller may too)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
