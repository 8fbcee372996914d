"""Operations on indexed artifacts: list, show, verify, export, remove, and fenced file access.

Every function takes ZLT_HOME and an artifact reference (any form zlt.artifacts.resolve takes) and returns data;
the CLI and the HTTP server print or serve it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zlt.artifacts import store
from zlt.artifacts.backends import LocalRegistry
from zlt.artifacts.collect import hash_tree
from zlt.artifacts.layout import GENERATIONS_DIR, LORA_FILE, META_FILE, checkpoint_file, list_generations
from zlt.artifacts.metadata import declared_data_hash, with_data_hash
from zlt.artifacts.promote import current_id, rollback_target
from zlt.artifacts.resolve import existing_folder, resolve, resolve_row
from zlt.core.errors import BadInputError, NotFoundError
from zlt.core.fsutil import sha256_file
from zlt.lora.convert import normalize_format, read_lora, render_lora
from zlt.lora.safetensors_io import (
    CorruptFileError,
    data_sha256,
    file_data_sha256,
    read_header,
    write_file,
)

GENERATIONS_PREFIX = GENERATIONS_DIR + "/"


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds") if ts is not None else None


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    meta = row["meta"]
    return {
        "id": row["id"], "job_id": row["job_id"], "name": row["name"], "path": row["path"],
        "version": row.get("version"), "parent_id": row.get("parent_id"),
        "created_at": _iso(row["created_at"]), "backend": row["backend"], "key_format": meta.get("key_format"),
        "final_step": meta.get("final_step"), "final_loss": meta.get("final_loss"),
        "best_step": meta.get("best_step"),  # set by `zlt eval`; None until the artifact is evaluated
        "exists": Path(row["path"]).is_dir(),
    }


def list_artifacts(home: Path) -> list[dict[str, Any]]:
    """Every indexed artifact, oldest first."""
    return [_summary(r) for r in store.fetch_all(Path(home))]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _read_meta(folder: Path) -> dict[str, Any]:
    return _read_json(folder / META_FILE)


def get_artifact(home: Path, artifact_id: str) -> dict[str, Any]:
    """Metadata, files and curve summary of one artifact. NotFoundError when unknown."""
    row = resolve_row(Path(home), artifact_id)
    folder = existing_folder(row)
    meta = _read_meta(folder)
    header: dict[str, str] = {}
    if (folder / LORA_FILE).is_file():
        try:
            header = read_header(folder / LORA_FILE).metadata
        except BadInputError as e:
            header = {"error": e.message}
    files = [{"path": p, **info} for p, info in row["meta"].get("files", {}).items()]
    out = _summary(row)
    out.update({
        "spec_sha256": row["spec_sha256"], "dataset_sha256": row["dataset_sha256"],
        "registry": row["meta"].get("registry"), "status": row["meta"].get("status"),
        "checkpoint_steps": row["meta"].get("checkpoint_steps") or [],  # what ID@STEP / checkpoint can name
        "training_meta": {k: v for k, v in meta.items() if k not in ("curve", "files")},
        "curve": meta.get("curve_summary", {}),
        "lora_metadata": header,
        "files": files,
        "warnings": row["meta"].get("warnings", []),
        "lineage": row.get("lineage") or {},
    })
    out["generations"] = list_generations(folder)
    out.update(best_view(meta, folder))
    return out


BEST_METRIC = "style_similarity"  # what the best-checkpoint rule ranks by (zlt/eval/best.py)
NO_EVAL_NOTE = ("no evaluation yet: evaluate the artifact (MCP tool evaluate, CLI zlt eval ID); each evaluation "
                "sets `best`, and ID@best (checkpoint 'best') then names its step")


def best_view(meta: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`best`: the step the artifact's last evaluation picked and that evaluation (its job, report, the metric and
    its value, the LoRA scale it drew at, when); None with `best_note` saying why until one has run."""
    ev = meta.get("eval") if isinstance(meta.get("eval"), dict) else None
    if not ev or ev.get("best_step") is None:
        note = NO_EVAL_NOTE if not ev else "the last evaluation picked no checkpoint (see its report)"
        return {"best": None, "best_note": note}
    report: dict[str, Any] = {}
    if isinstance(ev.get("report"), str):
        report = _read_json(folder / ev["report"])
    settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    pick = report.get("best") if isinstance(report.get("best"), dict) else {}
    row = next((r for r in ev.get("table") or [] if isinstance(r, dict) and r.get("step") == ev["best_step"]
                and r.get("label") != "base"), {})
    return {"best": {
        "step": ev["best_step"], "file": ev.get("best_file"), "passed": ev.get("passed"),
        "reason": ev.get("reason") or pick.get("reason"), "caveat": ev.get("caveat", pick.get("caveat")),
        "metric": BEST_METRIC, "value": row.get(BEST_METRIC),
        "scale": ev.get("scale", settings.get("scale")),
        "eval_job_id": ev.get("job_id", report.get("job_id")),
        "report": ev.get("report"), "evaluated_at": ev.get("evaluated_at"),
    }, "best_note": "from the last evaluation; a new evaluation replaces it"}


@dataclass
class VerifyResult:
    artifact_id: str
    path: str
    checked: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "artifact_id": self.artifact_id, "path": self.path, "checked": self.checked,
                "mismatches": self.mismatches}


def verify_folder(folder: Path, expected: dict[str, dict[str, Any]], artifact_id: str) -> VerifyResult:
    """Re-hash every file against `expected`; also check each .safetensors parses and matches its own header hash."""
    result = VerifyResult(artifact_id=artifact_id, path=str(folder))
    # generations/ is written after collection by `zlt generate` (zlt.infer); it is not part of what was trained.
    actual = {k: v for k, v in hash_tree(folder).items() if not k.startswith(GENERATIONS_PREFIX)}
    for rel, info in expected.items():
        got = actual.get(rel)
        if got is None:
            result.mismatches.append({"path": rel, "problem": "missing", "expected": info.get("sha256")})
        elif got["sha256"] != info.get("sha256"):
            result.mismatches.append(
                {"path": rel, "problem": "changed", "expected": info.get("sha256"), "actual": got["sha256"]}
            )
    for rel in sorted(set(actual) - set(expected)):
        result.mismatches.append({"path": rel, "problem": "unexpected", "actual": actual[rel]["sha256"]})
    for rel in sorted(actual):
        if not rel.endswith(".safetensors"):
            continue
        try:
            declared = declared_data_hash(read_header(folder / rel).metadata)
            if declared and file_data_sha256(folder / rel) != declared:
                result.mismatches.append({"path": rel, "problem": "data does not match modelspec.hash_sha256"})
        except CorruptFileError as e:
            result.mismatches.append({"path": rel, "problem": "corrupt", "message": e.message})
    result.checked = len(actual)
    return result


def verify_artifact(home: Path, artifact_id: str) -> VerifyResult:
    """Re-hash every file of an indexed artifact, or of an artifact folder given by path (checked against its
    training_meta.json, which lists every file but itself)."""
    candidate = Path(artifact_id).expanduser()
    if ("/" in artifact_id or artifact_id.startswith(".")) and (candidate / META_FILE).is_file():
        meta = _read_meta(candidate)
        expected = dict(meta.get("files") or {})
        expected[META_FILE] = {"sha256": sha256_file(candidate / META_FILE)}
        return verify_folder(candidate.resolve(), expected, candidate.resolve().name)
    row = resolve_row(Path(home), artifact_id)
    return verify_folder(existing_folder(row), row["meta"].get("files", {}), row["id"])


def export_artifact(
    home: Path, artifact_id: str, fmt: str, out: Path | None = None, *, step: int | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the final LoRA (or checkpoint `step`: a number or 'best', also given as ID@STEP) in another key format.
    Default: ./<id>.<format>.safetensors."""
    target_fmt = normalize_format(fmt)
    picked = resolve(Path(home), artifact_id, step=step)
    row, step = picked.row, picked.step
    folder = existing_folder(row)
    rel = LORA_FILE if step is None else checkpoint_file(step)
    src = folder / rel
    if not src.is_file():
        have = sorted(p.name for p in (folder / "checkpoints").glob("*.safetensors")) if step is not None else []
        raise NotFoundError(f"artifact '{row['id']}' has no {rel}", hint=f"kept: {', '.join(have) or 'none'}")
    expected = row["meta"].get("files", {}).get(rel, {}).get("sha256")
    if expected and sha256_file(src) != expected:
        raise BadInputError(
            f"{src} does not match the sha256 recorded when it was collected; refusing to export it",
            hint=f"run 'zlt artifacts verify {row['id']}'",
        )
    suffix = f".{fmt.strip().lower()}" + (f".step_{step:06d}" if step is not None else "") + ".safetensors"
    dest = Path(out).expanduser() if out is not None else Path.cwd() / (row["id"] + suffix)
    if dest.is_dir() or not dest.suffix:  # a folder, existing or to be made
        dest = dest / (row["id"] + suffix)
    if dest.suffix != ".safetensors":
        raise BadInputError(f"{dest}: the export must be a .safetensors file", hint="end --out with .safetensors")
    if dest.exists() and not overwrite:
        raise BadInputError(f"{dest} already exists", hint="pass --force to replace it, or choose another --out")
    weights, metadata = read_lora(src)
    tensors = render_lora(weights, target_fmt)
    meta = dict(metadata)
    meta["zlt.key_format"] = target_fmt
    meta["zlt.exported_from"] = f"{row['id']}/{rel}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_file(dest, tensors, with_data_hash(meta, data_sha256(tensors)))
    return dest.resolve()


def remove_artifact(home: Path, artifact_id: str, *, force: bool = False) -> str:
    """Delete an artifact folder and its index entry (the caller has asked the user); returns its id. The promoted
    current version of a style is refused unless `force`; its promotion history stays. Jobs that named it are the
    caller's to clear (zlt.flows.job_artifacts.remove_artifact): the registry never writes the jobs table."""
    home = Path(home)
    row = resolve_row(home, artifact_id, moving=False)  # a style name or 'latest' is not what one deletes
    if not force and current_id(home, row["name"]) == row["id"]:
        raise BadInputError(f"'{row['id']}' is the current version of style '{row['name']}'; not deleting it",
                            hint=_rm_current_hint(home, row))
    folder = Path(row["path"])
    if folder.is_dir():
        # Delete only what the index says is this artifact: a folder of that name holding its metadata or weights.
        if folder.name != row["id"] or not ((folder / META_FILE).exists() or (folder / LORA_FILE).exists()):
            raise BadInputError(
                f"{folder} does not look like artifact '{row['id']}'; not deleting it",
                hint="remove the folder by hand if you are sure",
            )
        LocalRegistry(folder.parent).remove(folder)
    store.delete(home, row["id"])
    return str(row["id"])


def _rm_current_hint(home: Path, row: dict[str, Any]) -> str:
    """How to delete the current version: only a command that works (a rollback only when there is one to do)."""
    style = row["name"]
    target, _why = rollback_target(home, style)
    if target is not None:
        return f"make another version current first ('zlt artifacts rollback {style}' makes {target} current), " \
               "or pass --force"
    others = [r for r in store.fetch_style(home, style) if r["id"] != row["id"] and Path(r["path"]).is_dir()]
    if others:
        return f"promote another version first ('zlt artifacts promote {others[-1]['id']}'), or pass --force"
    return f"it is the only version of style '{style}': pass --force to delete it"


def artifact_file(home: Path, artifact_id: str, name: str) -> Path:
    """A file inside the artifact folder (for downloads). Anything resolving outside it is NotFoundError."""
    row = resolve_row(Path(home), artifact_id)
    folder = existing_folder(row).resolve()
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not name.strip():
        raise NotFoundError(f"artifact '{row['id']}' has no file {name!r}")
    path = (folder / rel).resolve()
    try:
        path.relative_to(folder)
    except ValueError:
        raise NotFoundError(f"artifact '{row['id']}' has no file {name!r}") from None
    if not path.is_file():
        raise NotFoundError(f"artifact '{row['id']}' has no file {name!r}", hint="see 'zlt artifacts show ID'")
    return path

