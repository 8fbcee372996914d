"""Build the registry folder of a finished job: weights in the user's key format with full metadata, kept
checkpoints, spec, rendered configs, loss curve, samples, and the sha256 of every file; then index it.

The folder is built in a staging folder and published with one rename (see backends.py); the index row is
written after the rename, so the store never names a folder that is not complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zlt.artifacts import store
from zlt.artifacts.backends import LocalRegistry, open_registry
from zlt.artifacts.jobdir import CheckpointEntry, JobFiles, read_job_dir
from zlt.artifacts.layout import LORA_FILE, META_FILE
from zlt.artifacts.lineage import FOLDER_KEY, JobDirs, folder_lineage, job_lineage
from zlt.artifacts.metadata import (
    LoraFacts,
    build_lora_metadata,
    captioner_line,
    source_epoch,
    source_step,
    with_data_hash,
)
from zlt.artifacts.trained import Trained, describe_trained, differences, target_name
from zlt.artifacts.trainmeta import build_training_meta
from zlt.core.errors import BadInputError, JobFailedError
from zlt.core.fsutil import atomic_write_json, atomic_write_text, sha256_file, sha256_json
from zlt.core.naming import NameValues, parse_pattern, render_name, uses_version
from zlt.lora.convert import LoraWeights, read_lora, render_lora
from zlt.lora.safetensors_io import data_sha256, read_header, write_file
from zlt.run.curve import Curve, load_curve, plot_loss

MAX_VERSIONS = 10_000
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".txt", ".json")


class ArtifactExistsError(BadInputError):
    """The folder name the pattern gives is taken and the pattern has no {version} to bump."""

    kind = "artifact_exists"


@dataclass
class ArtifactRecord:
    id: str
    path: Path
    job_id: str
    name: str
    created_at: float
    backend: str
    key_format: str
    final_step: int | None
    final_loss: float | None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass
class _Picked:
    entry: CheckpointEntry
    step: int | None


def _pick_checkpoints(job: JobFiles, notes: list[str]) -> tuple[_Picked, list[_Picked]]:
    """The final weights and the intermediate checkpoints to keep. Unreadable files are reported and skipped."""
    valid: list[_Picked] = []
    for e in job.checkpoints:
        try:
            header = read_header(e.path)
        except BadInputError as err:  # corrupt, truncated, missing, or not safetensors
            notes.append(f"{err.message}; skipped")
            continue
        valid.append(_Picked(entry=e, step=e.step if e.step is not None else source_step(header.metadata)))
    if not valid:
        raise JobFailedError(
            f"job {job.job_id}: no readable checkpoint to collect",
            hint="the trainer saved no weights (see train.log); " + ("; ".join(notes) if notes else "checkpoints.json is empty"),
        )
    finals = [p for p in valid if p.entry.final]
    if finals:
        final = finals[-1]
    else:
        final = max(valid, key=lambda p: (p.step is not None, p.step or 0))
        early = ((job.result.get("eval_during_training") or {}).get("early_stop") or {}).get("stop") is True
        notes.append(
            (f"stopped early (eval.early_stop): {LORA_FILE} holds the newest checkpoint" if early else
             f"no readable final checkpoint: {LORA_FILE} holds the newest readable one")
            + (f" (step {final.step})" if final.step is not None else "")
        )
    by_step: dict[int, _Picked] = {}
    for p in valid:
        if p.step is not None and not p.entry.final:
            by_step[p.step] = p
    keep = job.spec.output.save.keep
    steps = sorted(by_step)[-keep:]
    best = (job.result.get("eval_during_training") or {}).get("best_step")
    if isinstance(best, int) and best in by_step and best not in steps and by_step[best] is not final:
        steps = sorted([*steps, best])  # the checkpoint scored best while training is never dropped
        notes.append(f"checkpoint step {best} kept beyond output.save.keep={keep}: the evaluation while training "
                     "scored it best")
    return final, [by_step[s] for s in steps]


def _write_weights(job: JobFiles, picked: _Picked, dest: Path, *, final: bool, common: dict[str, Any],
                   trained: Trained | None = None, loaded: tuple[LoraWeights, dict[str, str]] | None = None
                   ) -> dict[str, Any]:
    weights, source_meta = loaded or read_lora(picked.entry.path)
    fmt = job.spec.output.key_format
    tensors = render_lora(weights, fmt)
    step = picked.step if picked.step is not None else (job.spec.training.max_steps if final else None)
    described: dict[str, Any] = {}
    if trained is not None:
        described = {"precision": trained.precision, "adapter": trained.adapter if trained.adapter_merged is not False
                     else None, "timestep": json.dumps(trained.timestep, sort_keys=True) if trained.timestep else None}
    facts = LoraFacts(
        job_id=job.job_id, step=step, final=final, rank=weights.rank, key_format=fmt,
        epoch=source_epoch(source_meta), alpha=weights.alpha,  # no alpha in the file: alpha = rank, as loaders read it
        target_modules=tuple(sorted({target_name(m) for m in weights.modules})), modules=len(weights.modules),
        **described, **common,
    )
    meta = with_data_hash(build_lora_metadata(job.spec, facts, source_meta), data_sha256(tensors))
    write_file(dest, tensors, meta)
    return {
        "step": step, "file": dest.name if final else f"checkpoints/{dest.name}", "source": str(picked.entry.path),
        "source_format": weights.source_format, "rank": weights.rank, "modules": len(weights.modules),
        "data_sha256": meta["sshs_model_hash"],
    }


def _copy_tree(src: Path, dest: Path, suffixes: tuple[str, ...] | None = None) -> list[str]:
    """Regular files only (symlinks are not followed: nothing outside the job leaks in)."""
    copied: list[str] = []
    if not src.is_dir() or src.is_symlink():
        return copied
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        for name in sorted(files):
            p = Path(root) / name
            if p.is_symlink() or not p.is_file() or (suffixes and p.suffix.lower() not in suffixes):
                continue
            rel = p.relative_to(src)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest / rel)
            copied.append(rel.as_posix())
    return copied


def _copy_samples(job: JobFiles, staging: Path) -> list[str]:
    dest = staging / "samples"
    copied: list[str] = []
    # ai-toolkit writes <training_folder>/<name>/samples/, the built-in trainer output/samples/
    for root in job.output_roots:
        for folder in sorted(p for p in root.rglob("samples") if p.is_dir() and not p.is_symlink()):
            copied += [f"samples/{r}" for r in _copy_tree(folder, dest, SAMPLE_SUFFIXES)]
    for ev in job.events:  # samples the built-in trainer wrote elsewhere in the job folder
        if ev.get("type") != "sample" or not isinstance(ev.get("path"), str):
            continue
        p = Path(ev["path"])
        p = p if p.is_absolute() else job.job_dir / p
        try:
            p = p.resolve()
            p.relative_to(job.job_dir)
        except (OSError, ValueError):
            continue
        target = dest / p.name
        if p.is_file() and not p.is_symlink() and not target.exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
            copied.append(f"samples/{p.name}")
    return sorted(set(copied))


def hash_tree(folder: Path) -> dict[str, dict[str, Any]]:
    """relative posix path -> {sha256, size} for every regular file under folder."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            if p.is_file() and not p.is_symlink():
                out[p.relative_to(folder).as_posix()] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return dict(sorted(out.items()))


def _build(job: JobFiles, staging: Path, *, created_at: float, attempts: int, curve: Curve,
           notes: list[str], spec_sha256: str) -> dict[str, Any]:
    spec = job.spec
    save = spec.output.save
    final, kept = _pick_checkpoints(job, notes)
    ds = job.dataset
    num_images = ds.get("num_images") if isinstance(ds.get("num_images"), int) else None
    common = {
        "spec_sha256": spec_sha256, "dataset_sha256": ds.get("dataset_sha256"), "num_images": num_images,
        "date": created_at, "backend": job.backend, "captioner": captioner_line(ds.get("auto_captions")),
    }
    lora, checkpoints = None, []
    loaded: tuple[LoraWeights, dict[str, str]] | None = None
    trained: Trained | None = None
    try:
        loaded = read_lora(final.entry.path)
        trained = describe_trained(job, loaded[0], loaded[1], final.step)
        notes.extend(differences(trained, job))
    except BadInputError as err:
        if save.lora_weights:
            raise
        notes.append(f"what was trained is not recorded: {err.message}")
    if save.lora_weights:
        lora = _write_weights(job, final, staging / LORA_FILE, final=True, common=common, trained=trained,
                              loaded=loaded)
        for p in kept:
            try:
                checkpoints.append(_write_weights(
                    job, p, staging / "checkpoints" / f"step_{p.step:06d}.safetensors", final=False, common=common,
                    trained=trained,
                ))
            except BadInputError as err:
                notes.append(f"checkpoint {p.entry.path}: {err.message}; skipped")
    else:
        notes.append("output.save.lora_weights is false: no weights kept")
    if save.config:
        atomic_write_text(staging / "spec.yaml", job.spec_text)
        _copy_tree(job.job_dir / "render", staging / "render")
    samples = _copy_samples(job, staging)
    note = plot_loss(curve, staging / "loss.png", f"{spec.name} ({job.job_id})")
    if note:
        notes.append(note)
    files = hash_tree(staging)
    meta = build_training_meta(
        job, created_at=created_at, attempts=attempts, curve=curve, lora=lora, checkpoints=checkpoints,
        samples=samples, notes=notes, spec_sha256=spec_sha256, files=files, trained=trained,
    )
    if save.training_meta:
        atomic_write_json(staging / META_FILE, meta)
        path = staging / META_FILE
        files = dict(sorted({**files, META_FILE: {"sha256": sha256_file(path), "size": path.stat().st_size}}.items()))
    return {"files": files, "meta": meta}


def _publish(registry: LocalRegistry, staging: Path, home: Path, pattern: str, values: NameValues,
             row: dict[str, Any]) -> Path:
    """Rename staging to the first free name; index it. Never replaces an existing folder or index entry. The
    version is decided before the rename (the folder records it, see _record_line); the index row confirms it."""
    versioned = uses_version(pattern)
    # The style's next version; a name taken on disk moves on to the one after (the index row decides).
    start = store.peek_next_version(home, values.style_name) if versioned else 0
    for attempt in range(MAX_VERSIONS):
        version = start + attempt if versioned else store.peek_next_version(home, values.style_name)
        name = render_name(pattern, values, version if versioned else 0)
        if registry.exists(name) or store.id_taken(home, name):
            if versioned:
                continue
            break
        _record_line(staging, row, version)
        try:
            path = registry.publish(staging, name)
        except FileExistsError:
            continue
        try:
            store.insert(home, {**row, "id": name, "path": str(path), "version": version})
        except FileExistsError:  # another collector took this id or this version between our check and insert
            os.rename(path, staging)
            continue
        except BaseException:
            # Unpublish, so the caller's cleanup removes it: no folder may exist that the index does not name.
            os.rename(path, staging)
            raise
        return path
    raise _exists_error(registry, render_name(pattern, values, 0))


def _record_line(staging: Path, row: dict[str, Any], version: int) -> None:
    """Write style, version, parent and lineage into the folder's training_meta.json (and its new sha256 into the
    index row), so the folder describes its line without the index. No training_meta.json: the index alone."""
    path = staging / META_FILE
    if not path.is_file():
        return
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta[FOLDER_KEY] = folder_lineage(row["name"], version, row.get("parent_id"), row.get("lineage"))
    atomic_write_json(path, meta)
    row["meta"]["files"][META_FILE] = {"sha256": sha256_file(path), "size": path.stat().st_size}


def _exists_error(registry: LocalRegistry, name: str) -> ArtifactExistsError:
    return ArtifactExistsError(
        f"artifact '{name}' already exists in {registry.root}; it is never overwritten",
        hint="add {version} to output.naming.pattern (e.g. '{job_id}_{style_name}_v{version}'), "
        f"or remove the old one with 'zlt artifacts rm {name}'",
    )


def _name_values(job: JobFiles, created_at: float, curve: Curve) -> NameValues:
    final_steps = [c.step for c in job.checkpoints if c.final and c.step is not None]
    steps = final_steps[-1] if final_steps else (curve.steps[-1] if curve.steps else job.spec.training.max_steps)
    return NameValues(
        job_id=job.job_id, style_name=job.spec.name, preset=job.spec.preset, rank=job.spec.model.lora.rank,
        steps=int(steps), date=time.strftime("%Y%m%d", time.gmtime(created_at)),
    )


def collect_artifact(job_dir: Path, *, home: Path, attempts: int = 1, now: float | None = None,
                     job_dirs: JobDirs | None = None) -> ArtifactRecord:
    """Build, publish and index the artifact of a finished job. Returns its record (`.id` is the folder name).
    Only the registry is written: the job records the artifact it left itself (zlt.flows.finish.record_end at the
    end of its run; zlt.flows.artifacts.collect for a collection afterwards). `job_dirs`: see lineage.images_of."""
    home = Path(home)
    job = read_job_dir(Path(job_dir))
    spec = job.spec
    pattern = spec.output.naming.pattern
    parse_pattern(pattern)
    created_at = now if now is not None else time.time()
    curve, notes = load_curve(job.events, job.output_roots, job.job_dir)
    notes = job.warnings + notes
    values = _name_values(job, created_at, curve)
    registry = open_registry(spec, home)
    first = render_name(pattern, values, 0)
    if not uses_version(pattern) and (registry.exists(first) or store.id_taken(home, first)):
        raise _exists_error(registry, first)  # fail before the expensive build
    spec_sha256 = sha256_json(spec.model_dump(mode="json"))
    staging = registry.begin()
    try:
        built = _build(job, staging, created_at=created_at, attempts=attempts, curve=curve, notes=notes,
                       spec_sha256=spec_sha256)
        meta = built["meta"]
        summary = meta["curve_summary"]
        final_step, final_loss = meta["training"]["final_step"], summary.get("final_loss")
        index_meta = {
            "files": built["files"], "key_format": spec.output.key_format, "registry": str(registry.root),
            "registry_type": registry.kind, "final_step": final_step, "final_loss": final_loss,
            "checkpoint_steps": [c["step"] for c in meta["checkpoints"]], "status": meta["status"], "warnings": notes,
        }
        row = {
            "job_id": job.job_id, "name": spec.name, "created_at": created_at, "backend": job.backend,
            "spec_sha256": spec_sha256, "dataset_sha256": job.dataset.get("dataset_sha256"), "meta": index_meta,
        }
        row.update(job_lineage(job, home, job_dirs))  # parent_id + lineage (zlt/artifacts/lineage.py)
        path = _publish(registry, staging, home, pattern, values, row)
    except BaseException:
        registry.abort(staging)
        raise
    return ArtifactRecord(
        id=path.name, path=path, job_id=job.job_id, name=spec.name, created_at=created_at, backend=job.backend,
        key_format=spec.output.key_format, final_step=final_step, final_loss=final_loss,
        files=built["files"], warnings=notes,
    )
