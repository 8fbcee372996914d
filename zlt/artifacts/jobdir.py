"""Read a job directory (docs/architecture.md, "Job directory") into typed values for collection.

Only `spec.yaml` and one readable checkpoint are required; every other file is optional so that a job whose
runner died half way can still be collected, with what is missing recorded as a warning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError, NotFoundError, SpecError
from zlt.core.events import read_events
from zlt.run.checkpoints import HeaderError, is_resume_state, read_safetensors_header
from zlt.spec.load import load_spec
from zlt.spec.models import JobSpec

# Step numbers in upstream file names: ai-toolkit `<name>_000000250`, musubi `<name>-step00000250`,
# generic `step_250` / `step-250`.
_STEP_NAME = re.compile(r"(?:[_-]step[_-]?|^step[_-]?|_)(\d{3,})$")


@dataclass
class CheckpointEntry:
    step: int | None
    path: Path
    final: bool = False
    size: int | None = None


@dataclass
class JobFiles:
    job_dir: Path
    spec: JobSpec
    spec_text: str
    job_id: str
    backend: str
    output_dir: Path
    result: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[CheckpointEntry] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def output_roots(self) -> list[Path]:
        """Where the trainer wrote: the job's output/ first, then this attempt's folder when it lies elsewhere
        (a musubi resume writes to output/resume_from_<step>/, a --workdir job anywhere)."""
        main, attempt = (self.job_dir / "output").resolve(), self.output_dir.resolve()
        roots = [main] if attempt.is_relative_to(main) else [main, attempt]
        return [r for r in roots if r.is_dir()]


def _read_json(path: Path, warnings: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        warnings.append(f"{path.name}: unreadable ({e}); ignored")
        return None


def _is_resume_state(path: Path) -> bool:
    """The built-in trainer's optimizer/RNG state files share the LoRA files' names (in `state/`)."""
    try:
        meta = read_safetensors_header(path).get("__metadata__") or {}
    except (HeaderError, OSError):
        return False
    return isinstance(meta, dict) and is_resume_state(meta)


def step_from_name(path: Path) -> int | None:
    m = _STEP_NAME.search(path.stem)
    return int(m.group(1)) if m else None


def scan_checkpoints(output_dir: Path) -> list[CheckpointEntry]:
    """Fallback when checkpoints.json is missing: *.safetensors in the trainer's folder, steps from their names.
    The one file without a step (ai-toolkit/musubi `<name>.safetensors`) is the final."""
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.rglob("*.safetensors")
             if "samples" not in p.relative_to(output_dir).parts and not _is_resume_state(p)]
    entries = [CheckpointEntry(step=step_from_name(p), path=p, size=p.stat().st_size) for p in found]
    unstepped = sorted((e for e in entries if e.step is None), key=lambda e: e.path.stat().st_mtime)
    if unstepped:
        unstepped[-1].final = True
    return entries


def to_timestamp(value: Any) -> float | None:
    """result.json times may be unix seconds or ISO 8601 strings."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _checkpoint_entries(raw: Any, job_dir: Path, output_dir: Path, warnings: list[str]) -> list[CheckpointEntry]:
    out = []
    items = raw.get("checkpoints") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        warnings.append("checkpoints.json: no 'checkpoints' list; ignored")
        return []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            warnings.append(f"checkpoints.json: entry {i} has no path; ignored")
            continue
        if item.get("valid") is False:  # the runner already found it unreadable
            warnings.append(f"{item['path']}: {item.get('problem') or 'marked invalid by the runner'}; skipped")
            continue
        p = Path(item["path"]).expanduser()
        if not p.is_absolute():
            # Relative paths: to the trainer's folder first (what trainers print), then to the job folder.
            p = output_dir / p if (output_dir / p).exists() else job_dir / p
        step = item.get("step")
        out.append(CheckpointEntry(
            step=int(step) if isinstance(step, int) and not isinstance(step, bool) else None,
            path=p, final=bool(item.get("final")), size=item.get("size"),
        ))
    return out


def read_job_dir(job_dir: Path) -> JobFiles:
    job_dir = Path(job_dir).expanduser().resolve()
    if not job_dir.is_dir():
        raise NotFoundError(f"{job_dir}: job folder not found", hint="pass the folder the runner wrote (zlt jobs show ID)")
    spec_path = job_dir / "spec.yaml"
    if not spec_path.is_file():
        raise BadInputError(f"{spec_path}: missing; {job_dir} is not a zlt job folder", hint="the runner writes spec.yaml first")
    try:
        loaded = load_spec(spec_path)
    except SpecError as e:
        raise BadInputError(f"{spec_path}: the job's spec no longer validates: " + "; ".join(map(str, e.errors))) from None
    warnings: list[str] = []
    result = _read_json(job_dir / "result.json", warnings) or {}
    if not isinstance(result, dict):
        result = {}
    dataset = _read_json(job_dir / "dataset.json", warnings) or {}
    if not isinstance(dataset, dict):
        dataset = {}
    captions = _read_json(job_dir / "captions.json", warnings) if (job_dir / "captions.json").is_file() else None
    if isinstance(captions, dict):  # dataset.caption.auto: which captions the job generated, by what
        dataset["auto_captions"] = captions
    raw_ckpts = _read_json(job_dir / "checkpoints.json", warnings)
    output_dir = job_dir / "output"
    if isinstance(raw_ckpts, dict) and isinstance(raw_ckpts.get("output_dir"), str):
        output_dir = Path(raw_ckpts["output_dir"]).expanduser()
        output_dir = output_dir if output_dir.is_absolute() else job_dir / output_dir
    if raw_ckpts is None:
        checkpoints = scan_checkpoints(output_dir)
        if checkpoints:
            warnings.append("checkpoints.json missing: checkpoints found by scanning the trainer's folder")
    else:
        checkpoints = _checkpoint_entries(raw_ckpts, job_dir, output_dir, warnings)
    ckpt_backend = raw_ckpts.get("backend") if isinstance(raw_ckpts, dict) else None
    backend = str(result.get("backend") or ckpt_backend or loaded.spec.training.backend)
    job_id = str(result.get("job_id") or job_dir.name)
    return JobFiles(
        job_dir=job_dir, spec=loaded.spec, spec_text=spec_path.read_text(encoding="utf-8"), job_id=job_id,
        backend=backend, output_dir=output_dir, result=result, dataset=dataset, checkpoints=checkpoints,
        events=read_events(job_dir / "events.jsonl"), warnings=warnings,
    )
