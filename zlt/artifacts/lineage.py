"""Where a version comes from: its parent artifact, the spec diff against the parent, the dataset hash, and which
images were added or removed (by the sha256 of the source file, so a renamed image is not a change).

`zlt retrain` writes `retrain.json` into the new job's folder; collection reads it back here and keeps the result
twice: in the index row (`artifacts.parent_id`, `artifacts.lineage_json`) and in the artifact folder itself
(training_meta.json `lineage`: style, version, parent id and the rest), so a copied or re-indexed folder keeps its
line after the job folder is gone. Every artifact records its image set, so the next version can be compared with
it even after the prepared dataset cache is gone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zlt.artifacts import store
from zlt.core.errors import ZltError
from zlt.core.paths import job_dir as default_job_dir
from zlt.dataset.listing import dataset_listing

if TYPE_CHECKING:
    from zlt.artifacts.jobdir import JobFiles

RETRAIN_FILE = "retrain.json"
FOLDER_KEY = "lineage"  # the key of training_meta.json that holds the folder's own lineage

JobDirs = Callable[[str], Path | None]  # job id -> its folder, or None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def spec_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """field path -> {"from", "to"} for every value that differs (missing on one side: None)."""
    a, b = flatten(old or {}), flatten(new or {})
    return {k: {"from": a.get(k), "to": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def manifest_images(manifest_path: str | Path | None) -> dict[str, str] | None:
    """source sha256 -> source file (relative to the dataset folder) of a prepared dataset's manifest; mirrored
    copies are left out. None when the manifest cannot be read."""
    if not manifest_path:
        return None
    try:
        doc = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    images: dict[str, str] = {}
    for entry in doc.get("images", []) if isinstance(doc, dict) else []:
        if isinstance(entry, dict) and not entry.get("flipped") and isinstance(entry.get("source_sha256"), str):
            images.setdefault(entry["source_sha256"], str(entry.get("source") or entry.get("file") or ""))
    return images


def image_changes(old: dict[str, str] | None, new: dict[str, str] | None) -> dict[str, Any] | None:
    """Added and removed images by content hash; None when either side is unknown."""
    if old is None or new is None:
        return None
    added = sorted(({"sha256": h, "file": new[h]} for h in set(new) - set(old)), key=lambda d: d["file"])
    removed = sorted(({"sha256": h, "file": old[h]} for h in set(old) - set(new)), key=lambda d: d["file"])
    return {"added": added, "removed": removed, "kept": len(set(old) & set(new))}


def _listing_sha(source: Any) -> str | None:
    try:
        return dataset_listing(Path(source)).get("listing_sha256") if isinstance(source, str) else None
    except ZltError:
        return None


def read_retrain(job_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((Path(job_dir) / RETRAIN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def images_of(home: Path, row: dict[str, Any], job_dirs: JobDirs | None = None) -> dict[str, str] | None:
    """An indexed artifact's image set: recorded in its lineage, else read from its job's manifest if still there.
    `job_dirs` finds a job's folder by id (the flows layer asks the job store); by default the folder the lineage
    names, else the default job folder (zlt.core.paths.job_dir)."""
    lineage = row.get("lineage") or {}
    images = lineage.get("images")
    if isinstance(images, dict):
        return images
    job_dir = Path(lineage["job_dir"]) if lineage.get("job_dir") else None
    if job_dir is None or not job_dir.is_dir():
        job_dir = (job_dirs or default_job_dirs(home))(row["job_id"]) if row.get("job_id") else None
    try:
        doc = json.loads((job_dir / "dataset.json").read_text(encoding="utf-8")) if job_dir else None
    except (OSError, ValueError):
        doc = None
    return manifest_images(doc.get("manifest")) if isinstance(doc, dict) else None


def default_job_dirs(home: Path) -> JobDirs:
    """A job's folder where the runner puts it by default, when it is there. zlt.artifacts never reads the jobs
    table (the two refer to each other by id only): a caller that knows better passes its own lookup."""
    def lookup(job_id: str) -> Path | None:
        folder = default_job_dir(Path(home), job_id)
        return folder if folder.is_dir() else None
    return lookup


def job_lineage(job: JobFiles, home: Path, job_dirs: JobDirs | None = None) -> dict[str, Any]:
    """`parent_id` and `lineage` for the index row of the artifact collected from `job`. `job_dirs`: how to find
    the parent's job folder when its image set is not recorded (images_of)."""
    images = manifest_images(job.dataset.get("manifest"))
    # Where the trainer state lives and what the dataset folder looked like: what `zlt retrain` needs to resume
    # a parent whose job row is gone (another home, a copied or exported artifact): the folder carries it.
    lineage: dict[str, Any] = {"dataset_sha256": job.dataset.get("dataset_sha256"), "images": images,
                               "job_dir": str(job.job_dir), "listing_sha256": _listing_sha(job.dataset.get("source"))}
    retrain = read_retrain(job.job_dir)
    if not retrain or not retrain.get("parent_id"):
        return {"parent_id": None, "lineage": lineage}
    parent_id = str(retrain["parent_id"])
    lineage.update({
        "parent_id": parent_id, "mode": retrain.get("mode"), "base_step": retrain.get("base_step"),
        "parent_dataset_sha256": retrain.get("parent_dataset_sha256"),
        "spec_diff": spec_diff(retrain.get("parent_spec"), job.spec.model_dump(mode="json")),
    })
    try:
        parent = store.resolve_exact(Path(home), parent_id)
    except ZltError:
        parent = None  # removed since: the recorded id still names it
    lineage["dataset_changes"] = image_changes(images_of(home, parent, job_dirs) if parent else None, images)
    return {"parent_id": parent_id, "lineage": lineage}


def folder_lineage(style: str, version: int | None, parent_id: str | None, lineage: dict[str, Any] | None
                   ) -> dict[str, Any]:
    """What an artifact folder records of its line (training_meta.json `lineage`)."""
    rest = {k: v for k, v in (lineage or {}).items() if k not in ("style", "version", "parent_id")}
    return {"style": style, "version": version, "parent_id": parent_id, **rest}


def read_folder_lineage(meta: dict[str, Any]) -> dict[str, Any] | None:
    """`version`, `parent_id` and `lineage` (for the index row) from a folder's training_meta.json; None when the
    folder records none (collected before folders described their line)."""
    doc = meta.get(FOLDER_KEY)
    if not isinstance(doc, dict) or "version" not in doc:
        return None
    version = doc.get("version")
    parent_id = doc.get("parent_id")
    lineage = {k: v for k, v in doc.items() if k not in ("style", "version")}
    if not parent_id:
        lineage.pop("parent_id", None)
    return {"version": version if isinstance(version, int) and not isinstance(version, bool) else None,
            "parent_id": str(parent_id) if parent_id else None, "lineage": lineage}
