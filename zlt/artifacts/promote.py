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


def rollback_target(home: Path, style: str) -> tuple[str | None, str]:
    """The version `rollback` would make current (None: none) and why: the one that was current before the last
    promotion not yet rolled back (before the style's first promotion: its newest version); a style never promoted
    steps back from its newest version by version number. Versions whose folder is gone are passed over."""
    home = Path(home)
    line = store.fetch_style(home, style)
    if not line:
        raise NotFoundError(f"no artifacts of style '{style}'", hint="see 'zlt artifacts list' for the style names")
    usable = {r["id"] for r in line if Path(r["path"]).is_dir()}
    records = history(home, style)
    cur = current_id(home, style) or line[-1]["id"]  # never promoted (or all removed): it resolves to the newest
    if not records:
        cur_version = next(r["version"] for r in line if r["id"] == cur)
        older = [r for r in line if r["version"] is not None and r["version"] < cur_version and r["id"] in usable]
        return (older[-1]["id"], "the version before it") if older else (
            None, f"{cur} (v{cur_version}) is its oldest version and it was never promoted")
    undo: list[dict[str, Any]] = []  # the promotions not yet rolled back, oldest first
    for rec in records:
        if rec["action"] == "rollback":
            if undo:
                undo.pop()
        else:
            undo.append(rec)
    if not undo:
        return None, f"every promotion of it has been rolled back (it resolves to {cur})"
    newest = line[-1]["id"]
    while undo:
        rec = undo.pop()
        before = rec["previous_id"] or newest  # before the first promotion the style resolved to its newest
        if before in usable and before != cur:
            return before, f"current before {rec['artifact_id']} was promoted ({rec['at']})"
    return None, "no version that was current before its promotions is left to return to"


def rollback(home: Path, style: str, *, now: float | None = None) -> dict[str, Any]:
    """Undo the last promotion of `style`: the version current before it becomes current again (see
    rollback_target); BadInputError when there is nothing to roll back to."""
    target, why = rollback_target(home, style)
    if target is None:
        raise BadInputError(f"style '{style}': {why}; nothing to roll back to",
                            hint=f"promote a version by name ('zlt artifacts promote {style}@vN'); "
                                 f"see 'zlt artifacts list --style {style}'")
    return _record(Path(home), style, target, "rollback", now)


def history(home: Path, style: str) -> list[dict[str, Any]]:
    """Every promotion and rollback of `style`, oldest first."""
    with closing(store._connect(Path(home))) as db:
        rows = db.execute("SELECT * FROM artifact_promotions WHERE style = ? ORDER BY seq", (style,)).fetchall()
    return [{"seq": r["seq"], "action": r["action"], "artifact_id": r["artifact_id"], "previous_id": r["previous_id"],
             "at": _iso(r["ts"])} for r in rows]
