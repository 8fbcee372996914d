"""Rebuild the artifact index from the registry folders.

Collection publishes a folder with one rename and writes its index row right after; a crash between the two
leaves a complete folder the index does not name. `reindex` (and the worker when it starts) indexes such a
folder from its own training_meta.json (the hashes recorded when it was built, not re-hashed, so a folder
changed since still fails `verify`); a hidden `.staging-*` folder is an unfinished collection and is only
reported. Rows whose folder is gone are reported, never dropped: nothing is deleted here.

Version, parent and lineage come from the folder itself (training_meta.json `lineage`, written at collection);
a folder collected before folders recorded their line falls back to its job's folder, when that is still there
(found by the caller's lookup: the job store is not read here), and to the version its name was rendered with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt.artifacts import store
from zlt.artifacts.backends import STAGING_PREFIX, TRASH_PREFIX
from zlt.artifacts.jobdir import read_job_dir, to_timestamp
from zlt.artifacts.layout import LORA_FILE, META_FILE
from zlt.artifacts.lineage import JobDirs, default_job_dirs, job_lineage, read_folder_lineage
from zlt.core.errors import ZltError
from zlt.core.fsutil import sha256_file
from zlt.core.naming import NameValues, render_name, uses_version
from zlt.core.paths import default_registry_dir
from zlt.spec import load_spec


def registry_roots(home: Path, extra: list[Path] | None = None) -> list[Path]:
    """The default registry, every registry an indexed artifact lives in, and `extra`."""
    roots = [default_registry_dir(home)]
    for row in store.fetch_all(home):
        roots.append(Path(row["meta"].get("registry") or Path(row["path"]).parent))
    roots += [Path(p).expanduser() for p in extra or []]
    out: list[Path] = []
    for r in roots:
        r = r.resolve()
        if r not in out:
            out.append(r)
    return out


def _row_from_folder(home: Path, folder: Path, meta: dict[str, Any], job_dirs: JobDirs) -> dict[str, Any]:
    files = dict(meta.get("files") or {})
    files[META_FILE] = {"sha256": sha256_file(folder / META_FILE), "size": (folder / META_FILE).stat().st_size}
    summary = meta.get("curve_summary") or {}
    training = meta.get("training") or {}
    dataset = meta.get("dataset") or {}
    backend = meta.get("backend") or {}
    index_meta = {
        "files": dict(sorted(files.items())), "key_format": meta.get("key_format"), "registry": str(folder.parent),
        "registry_type": "local", "final_step": training.get("final_step"), "final_loss": summary.get("final_loss"),
        "checkpoint_steps": [c.get("step") for c in meta.get("checkpoints") or []], "status": meta.get("status"),
        "warnings": list(meta.get("warnings") or []) + ["indexed by reindex (the folder had no index row)"],
    }
    row = {
        "id": folder.name, "job_id": meta.get("job_id"), "name": meta.get("name") or folder.name, "path": str(folder),
        "created_at": to_timestamp(meta.get("created_at")) or (folder / META_FILE).stat().st_mtime,
        "backend": backend.get("name") if isinstance(backend, dict) else backend,
        "spec_sha256": meta.get("spec_sha256"), "dataset_sha256": dataset.get("dataset_sha256"), "meta": index_meta,
    }
    recorded = read_folder_lineage(meta)
    if recorded is not None:
        row.update(parent_id=recorded["parent_id"], lineage=recorded["lineage"], version=recorded["version"])
    else:
        row.update(_lineage(home, meta.get("job_id"), job_dirs))
        row["version"] = _version_in_name(folder, meta)
    return row


def _version_in_name(folder: Path, meta: dict[str, Any]) -> int | None:
    """The version the folder's name was rendered with, found by rendering its spec's pattern again."""
    try:
        spec = load_spec(folder / "spec.yaml").spec
        pattern = spec.output.naming.pattern
        if not uses_version(pattern):
            return None
        created = to_timestamp(meta.get("created_at")) or 0.0
        steps = (meta.get("training") or {}).get("final_step") or spec.training.max_steps
        values = NameValues(job_id=str(meta.get("job_id") or ""), style_name=spec.name, preset=spec.preset,
                            rank=spec.model.lora.rank, steps=int(steps),
                            date=time.strftime("%Y%m%d", time.gmtime(created)))
        return next((v for v in range(1000) if render_name(pattern, values, v) == folder.name), None)
    except (ZltError, OSError, ValueError, TypeError):
        return None


def _lineage(home: Path, job_id: str | None, job_dirs: JobDirs) -> dict[str, Any]:
    """The lineage collection would have recorded, when the job's folder is still there."""
    job_dir = job_dirs(job_id) if job_id else None
    if job_dir is None or not job_dir.is_dir():
        return {}
    try:
        return job_lineage(read_job_dir(job_dir), home, job_dirs)
    except Exception:  # noqa: BLE001 - lineage is a bonus; the folder gets indexed regardless
        return {}


def reindex(home: Path, registries: list[Path] | None = None, *, min_age_s: float = 0.0,
            job_dirs: JobDirs | None = None) -> dict[str, Any]:
    """Index every complete, unindexed artifact folder; report staging folders and rows whose folder is gone.
    `min_age_s` leaves alone folders finished more recently (a collector may be about to write their row).
    `job_dirs` finds a job's folder by id, for a folder that records no lineage of its own (the flows layer asks
    the job store; by default, the default job folder). Only the index is written: pointing each job at the
    artifact it left is the caller's (zlt.flows.artifacts.reindex_artifacts)."""
    home = Path(home)
    job_dirs = job_dirs or default_job_dirs(home)
    indexed = {row["id"]: row for row in store.fetch_all(home)}
    paths = {Path(r["path"]).resolve() for r in indexed.values()}
    report: dict[str, Any] = {"indexed": [], "incomplete": [], "missing": [], "skipped": [], "registries": []}
    for root in registry_roots(home, registries):
        if not root.is_dir():
            continue
        report["registries"].append(str(root))
        for entry in sorted(root.iterdir()):
            if not entry.is_dir() or entry.is_symlink():
                continue
            if entry.name.startswith(STAGING_PREFIX):
                report["incomplete"].append(str(entry))
                continue
            if entry.name.startswith((".", TRASH_PREFIX)) or entry.resolve() in paths:
                continue
            try:
                meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = None
            if not isinstance(meta, dict) or not (entry / LORA_FILE).is_file():
                report["skipped"].append({"path": str(entry), "why": f"no readable {META_FILE} and {LORA_FILE}"})
                continue
            if min_age_s and time.time() - (entry / META_FILE).stat().st_mtime < min_age_s:
                continue
            if entry.name in indexed:
                report["skipped"].append({"path": str(entry), "why": f"id '{entry.name}' is indexed at another path"})
                continue
            row = _row_from_folder(home, entry.resolve(), meta, job_dirs)
            try:
                version = store.insert(home, row)
            except FileExistsError:
                try:  # that version is taken (or the id was indexed meanwhile): the style's next one
                    version = store.insert(home, {**row, "version": None})
                except FileExistsError:
                    continue
            report["indexed"].append({"id": entry.name, "path": str(entry.resolve()), "version": version})
    report["missing"] = [r["id"] for r in indexed.values() if not Path(r["path"]).is_dir()]
    return report


def startup_reindex(home: Path, log, *, index: Callable[..., dict[str, Any]] = reindex) -> None:
    """What a worker does when it starts: close the crash window of an earlier collection, report leftovers.
    Never stops the worker: a problem here is logged. `index`: reindex, or the flows layer's reindex that also
    points each job at the artifact it left (zlt.flows.artifacts.reindex_artifacts)."""
    try:
        rep = index(Path(home), min_age_s=STARTUP_MIN_AGE_S)
    except Exception as e:  # noqa: BLE001 - the index is repairable later with `zlt artifacts reindex`
        log(f"artifact index check failed: {e!r}; run 'zlt artifacts reindex'")
        return
    for i in rep["indexed"]:
        log(f"indexed artifact {i['id']} (its folder was published but never indexed)")
    for p in rep["incomplete"]:
        log(f"incomplete artifact staging folder {p} (an unfinished collection)")


# A collector writes the index row milliseconds after the rename; a folder this old has no collector left.
STARTUP_MIN_AGE_S = 120.0
