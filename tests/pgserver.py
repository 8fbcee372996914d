"""A throwaway PostgreSQL server for the job-store tests and bench/jobs.py, from the installed binaries.

`ZLT_TEST_PG_URL` points the tests at a server someone else runs. Otherwise the Debian `postgresql`
package's initdb/pg_ctl start one in a temporary folder, listening on a Unix socket there only (no
port to collide with). PostgreSQL refuses to run as root, so under root (CI) the server runs as the
`postgres` user the package creates. Each test gets its own schema (`search_path` in the URL), so tests
stay independent without creating a database each.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

MISSING = ("PostgreSQL is not installed (Debian: apt-get install postgresql); the PostgreSQL half of the "
           "job-store tests is skipped")


def pg_bindir() -> Path | None:
    for cand in [os.environ.get("ZLT_TEST_PG_BINDIR", ""), *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if cand and (Path(cand) / "initdb").exists():
            return Path(cand)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="zlt-pg-"))
        self.data = self.dir / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str) -> None:
        r = subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout}{r.stderr}")

    def start(self) -> PgServer:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        opts = (f"-c listen_addresses='' -c unix_socket_directories={self.dir} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"),
                  "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/postgres?host={quote(str(self.dir), safe='')}"


def new_schema_url(base: str) -> str:
    """A fresh, empty schema on the server at `base`, as a URL whose connections use it."""
    import psycopg

    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}', safe='')}"
