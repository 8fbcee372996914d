"""Which version a style name resolves to: promotions, rollback and their history (table artifact_promotions,
migration m010_artifact_versions). Nothing here deletes a file or an index row.

The current version of a style is the newest promotion whose artifact is still indexed; a style that was never
promoted resolves to its newest version but has no "current" to protect from `rm`.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zlt.artifacts import store
from zlt.core.errors import BadInputError, NotFoundError


def _current_id(db: sqlite3.Connection, style: str) -> str | None:
    row = db.execute(
        "SELECT p.artifact_id FROM artifact_promotions AS p JOIN artifacts AS a ON a.id = p.artifact_id "
        "WHERE p.style = ? ORDER BY p.seq DESC LIMIT 1", (style,),
    ).fetchone()
    return row[0] if row else None


def current_id(home: Path, style: str) -> str | None:
    """The promoted current version of `style`, or None when none was promoted (or all were removed)."""
    with closing(store._connect(Path(home))) as db:
        return _current_id(db, style)


def _record(home: Path, style: str, artifact_id: str, action: str, now: float | None) -> dict[str, Any]:
    for _attempt in range(7):
        try:
            return _record_once(home, style, artifact_id, action, now)
        except sqlite3.IntegrityError:
            continue  # PostgreSQL: another promotion of this style took that seq meanwhile
    return _record_once(home, style, artifact_id, action, now)


def _record_once(home: Path, style: str, artifact_id: str, action: str, now: float | None) -> dict[str, Any]:
    with closing(store._connect(Path(home))) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            previous = _current_id(db, style)
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM artifact_promotions WHERE style = ?",
                             (style,)).fetchone()[0]
            ts = time.time() if now is None else now
            db.execute(
                "INSERT INTO artifact_promotions (style, seq, artifact_id, previous_id, action, ts) "
                "VALUES (?, ?, ?, ?, ?, ?)", (style, seq, artifact_id, previous, action, ts),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return {"style": style, "current": artifact_id, "previous": previous, "action": action, "seq": seq,
            "at": _iso(ts)}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def promote(home: Path, artifact_id: str, *, now: float | None = None) -> dict[str, Any]:
    """Make artifact `artifact_id` (its full id: a reference is resolved first, by zlt.artifacts.resolve, which
    reads the current version from here) the version its style name resolves to."""
    row = store.resolve_exact(Path(home), artifact_id)
    if not Path(row["path"]).is_dir():
        raise NotFoundError(f"artifact '{row['id']}' is indexed but its folder {row['path']} is gone",
                            hint="restore the folder before promoting it")
    return _record(home, row["name"], row["id"], "promote", now)


def rollback(home: Path, style: str, *, now: float | None = None) -> dict[str, Any]:
    """Move the current version of `style` back to the version before it (by version number, folder present)."""
    home = Path(home)
    line = store.fetch_style(home, style)
    if not line:
        raise NotFoundError(f"no artifacts of style '{style}'", hint="see 'zlt artifacts list' for the style names")
    cur = current_id(home, style)
    if cur is None:
        cur = line[-1]["id"]  # never promoted: it resolves to the newest version
    cur_version = next(r["version"] for r in line if r["id"] == cur)
    older = [r for r in line if r["version"] is not None and r["version"] < cur_version and Path(r["path"]).is_dir()]
    if not older:
        raise BadInputError(f"style '{style}': {cur} (v{cur_version}) is its oldest version; nothing to roll back to",
                            hint=f"see 'zlt artifacts list --style {style}'")
    return _record(home, style, older[-1]["id"], "rollback", now)


def history(home: Path, style: str) -> list[dict[str, Any]]:
    """Every promotion and rollback of `style`, oldest first."""
    with closing(store._connect(Path(home))) as db:
        rows = db.execute("SELECT * FROM artifact_promotions WHERE style = ? ORDER BY seq", (style,)).fetchall()
    return [{"seq": r["seq"], "action": r["action"], "artifact_id": r["artifact_id"], "previous_id": r["previous_id"],
             "at": _iso(r["ts"])} for r in rows]
