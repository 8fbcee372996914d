"""The artifact index: the `artifacts` table of the store (its migrations live in zlt/artifacts/tables.py).

It writes and reads only the registry's own tables: a row names its job by id (`job_id`), and the job's pointer
back (`jobs.artifact_id`) is the job store's to write (zlt/flows/artifacts.py links the two, above both).

The index is how `zlt artifacts ...` finds an artifact by id wherever its spec's registry path put it; it also
keeps the sha256 of every file (training_meta.json included), which `verify` checks the folder against.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from zlt.artifacts.tables import connect
from zlt.core.errors import NotFoundError

COLUMNS = ("id", "job_id", "name", "path", "created_at", "backend", "spec_sha256", "dataset_sha256", "meta_json",
           "version", "parent_id", "lineage_json")


def _connect(home: Path) -> sqlite3.Connection:
    return connect(home)


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = {k: r[k] for k in COLUMNS}
    for col, key in (("meta_json", "meta"), ("lineage_json", "lineage")):
        try:
            d[key] = json.loads(d.pop(col) or "{}")
        except json.JSONDecodeError:
            d[key] = {}
    return d


def next_version(db: sqlite3.Connection, style: str) -> int:
    row = db.execute("SELECT MAX(version) FROM artifacts WHERE name = ?", (style,)).fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def id_taken(home: Path, artifact_id: str) -> bool:
    with closing(_connect(home)) as db:
        return db.execute("SELECT 1 FROM artifacts WHERE id = ?", (artifact_id,)).fetchone() is not None


def insert(home: Path, row: dict[str, Any]) -> int:
    """One transaction that writes the index row, and only it: the job records the artifact it left itself
    (zlt.flows.finish.record_end, zlt.flows.artifacts). Returns the version. A row without `version` (its folder
    name does not carry one) gets the style's next version here, inside the transaction; a row whose id or given
    version is taken raises FileExistsError."""
    auto = row.get("version") is None
    for _attempt in range(8):
        try:
            return _insert_once(home, row)
        except sqlite3.IntegrityError:
            # SQLite's BEGIN IMMEDIATE serialises writers; PostgreSQL's BEGIN does not, and the unique
            # (name, version) index can reject an auto version another writer took meanwhile: take the next one.
            if not auto or id_taken(home, row["id"]):
                raise FileExistsError(row["id"]) from None
    raise FileExistsError(row["id"])


def _insert_once(home: Path, row: dict[str, Any]) -> int:
    values = {k: row.get(k) for k in COLUMNS if k not in ("meta_json", "lineage_json")}
    values["meta_json"] = json.dumps(row.get("meta") or {}, sort_keys=True)
    values["lineage_json"] = json.dumps(row.get("lineage") or {}, sort_keys=True)
    with closing(_connect(home)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            if values.get("version") is None:
                values["version"] = next_version(db, values["name"])
            db.execute(
                f"INSERT INTO artifacts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                [values[k] for k in COLUMNS],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return int(values["version"])


def delete(home: Path, artifact_id: str) -> None:
    """The index row only; the caller clears the jobs' pointers to it (zlt.flows.artifacts.remove_artifact)."""
    with closing(_connect(home)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM artifacts WHERE id = ?", (artifact_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def fetch_all(home: Path) -> list[dict[str, Any]]:
    with closing(_connect(home)) as db:
        rows = db.execute("SELECT * FROM artifacts ORDER BY created_at, id").fetchall()
    return [_row(r) for r in rows]


def fetch_style(home: Path, style: str) -> list[dict[str, Any]]:
    """The version line of one style, v0 first."""
    with closing(_connect(home)) as db:
        rows = db.execute("SELECT * FROM artifacts WHERE name = ? ORDER BY version, created_at", (style,)).fetchall()
    return [_row(r) for r in rows]


def peek_next_version(home: Path, style: str) -> int:
    """The version the next artifact of `style` would get (a hint for folder names; insert decides)."""
    with closing(_connect(home)) as db:
        return next_version(db, style)


def resolve_exact(home: Path, artifact_id: str) -> dict[str, Any]:
    with closing(_connect(home)) as db:
        row = db.execute("SELECT * FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no artifact '{artifact_id}'", hint="see 'zlt artifacts list' for the ids")
    return _row(row)


def fetch_by_job(home: Path, job_id: str) -> list[dict[str, Any]]:
    """The artifacts a job left (one, unless it was collected again under another id)."""
    with closing(_connect(home)) as db:
        rows = db.execute("SELECT * FROM artifacts WHERE job_id = ? ORDER BY created_at", (job_id,)).fetchall()
    return [_row(r) for r in rows]


def fetch_by_prefix(home: Path, prefix: str) -> list[dict[str, Any]]:
    """Every artifact whose id starts with `prefix` (substr, not LIKE: '_' and '%' are common in ids)."""
    with closing(_connect(home)) as db:
        rows = db.execute("SELECT * FROM artifacts WHERE substr(id, 1, ?) = ? ORDER BY created_at",
                          (len(prefix), prefix)).fetchall()
    return [_row(r) for r in rows]


def update_meta(home: Path, artifact_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge `changes` into an artifact's index meta in one transaction (e.g. files added by an evaluation).
    Returns the new meta. NotFoundError when the id is not indexed."""
    with closing(_connect(home)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT meta_json FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no artifact '{artifact_id}'", hint="see 'zlt artifacts list' for the ids")
            try:
                meta = json.loads(row["meta_json"] or "{}")
            except json.JSONDecodeError:
                meta = {}
            meta.update(changes)
            db.execute("UPDATE artifacts SET meta_json = ? WHERE id = ?", (json.dumps(meta, sort_keys=True), artifact_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return meta
