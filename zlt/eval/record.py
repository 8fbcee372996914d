"""Put an evaluation into the artifact: the eval/ folder swapped in whole, training_meta.json and the index
updated so `zlt artifacts verify` still passes and `--step best` resolves.

A new evaluation replaces the previous eval/ folder (it is derived data, regenerated on demand; the weights,
which a user trained, are never touched).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any

from zlt.artifacts import store
from zlt.artifacts.backends import TRASH_PREFIX, LocalRegistry
from zlt.artifacts.layout import META_FILE
from zlt.core.fsutil import atomic_write_json, sha256_file

EVAL_DIR = "eval"


def staging_dir(folder: Path) -> Path:
    """A staging folder beside the artifact (same filesystem; swept like a collection's when its process dies)."""
    return LocalRegistry(folder.parent).begin()


def _hash_dir(root: Path, prefix: str) -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[f"{prefix}/{p.relative_to(root).as_posix()}"] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return out


def publish_eval(home: Path, artifact_id: str, folder: Path, staging: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Swap `staging` in as <folder>/eval, record its files and `summary` in training_meta.json and the index.
    Two evaluations of one artifact finishing at once publish one after the other (a lock under ZLT_HOME)."""
    import fcntl

    locks = Path(home) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"eval-{artifact_id}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _publish(home, artifact_id, folder, staging, summary)


def _publish(home: Path, artifact_id: str, folder: Path, staging: Path, summary: dict[str, Any]) -> dict[str, Any]:
    target = folder / EVAL_DIR
    trash = None
    if target.exists():
        host = socket.gethostname().replace("-", "_") or "host"
        trash = folder.parent / f"{TRASH_PREFIX}{host}-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(target, trash)
    os.rename(staging, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)

    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    files = {k: v for k, v in (meta.get("files") or {}).items() if not k.startswith(EVAL_DIR + "/")}
    files.update(_hash_dir(target, EVAL_DIR))
    meta["files"] = dict(sorted(files.items()))
    meta["eval"] = summary
    meta["best_step"] = summary.get("best_step")
    atomic_write_json(meta_path, meta)
    index_files = dict(files)
    index_files[META_FILE] = {"sha256": sha256_file(meta_path), "size": meta_path.stat().st_size}
    return store.update_meta(Path(home), artifact_id, {
        "files": dict(sorted(index_files.items())), "best_step": summary.get("best_step"), "eval": {
            k: summary.get(k) for k in ("best_step", "best_file", "evaluated_at", "clip_model", "passed", "scale",
                                     "caveat")},
    })
