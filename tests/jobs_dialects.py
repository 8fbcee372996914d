"""Run the job-store tests on both dialects: SQLite (a file under ZLT_HOME) and PostgreSQL (a throwaway
server, tests/pgserver.py). Import `dialect` and `pg_server` into a test module and mark it with
`pytestmark = pytest.mark.usefixtures("dialect")`: every test then runs once per dialect, and every
JobStore, worker and CLI subprocess it starts uses that dialect (through ZLT_STORE).

Without PostgreSQL installed the postgresql half skips, saying so; in CI (CI=true) it fails instead.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator

import pytest

from tests.pgserver import MISSING, PgServer, new_schema_url, pg_bindir


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the PostgreSQL tests: make test installs it)")
    pytest.skip(reason)


_server: PgServer | None = None


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The base URL of a PostgreSQL server for this test session: one server however many modules import
    this fixture (it stops when the test process exits)."""
    global _server
    url = os.environ.get("ZLT_TEST_PG_URL")
    if url:
        return url
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install 'zlt[postgres]')")
    if _server is None:
        bindir = pg_bindir()
        if bindir is None:
            _missing(MISSING)
        _server = PgServer(bindir).start()
        atexit.register(_server.stop)
    return _server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "sqlite":
        monkeypatch.setenv("ZLT_STORE", "sqlite")
        yield "sqlite"
        return
    base = request.getfixturevalue("pg_server")
    monkeypatch.setenv("ZLT_STORE", new_schema_url(base))
    yield "postgresql"
    from zlt.db.pg import close_pools

    close_pools()
