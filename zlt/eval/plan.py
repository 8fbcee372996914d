"""What an evaluation covers: which checkpoints of an artifact, which training images, which settings.

Reads only the registry folder (training_meta.json, spec.yaml, the weights files); no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.artifacts.layout import META_FILE
from zlt.artifacts.resolve import resolve_row
from zlt.core.errors import BadInputError, NotFoundError
from zlt.spec import load_spec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_TRAIN_IMAGES = 1000


@dataclass(frozen=True)
class Target:
    """One row of the evaluation: the base model (step 0, no file) or a LoRA file of the artifact."""

    step: int
    file: str | None  # relative to the artifact folder
    final: bool = False

    @property
    def base(self) -> bool:
        return self.file is None

    @property
    def label(self) -> str:
        return "base" if self.base else f"step {self.step}" + (" (final)" if self.final else "")


@dataclass
class ArtifactView:
    id: str
    folder: Path
    meta: dict[str, Any]
    spec: Any  # JobSpec | None (None when the artifact kept no spec.yaml)
    index_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger(self) -> str | None:
        if self.spec is not None:
            return self.spec.trigger
        return None

    def targets(self) -> list[Target]:
        """Base, every kept checkpoint, and the final weights; sorted by step."""
        out = [Target(0, None)]
        for c in self.meta.get("checkpoints") or []:
            if isinstance(c.get("step"), int) and c.get("file") and (self.folder / c["file"]).is_file():
                out.append(Target(int(c["step"]), c["file"]))
        lora = self.meta.get("lora") or {}
        if lora.get("file") and (self.folder / lora["file"]).is_file():
            step = lora.get("step") if isinstance(lora.get("step"), int) else (self.meta.get("training") or {}).get("final_step")
            out.append(Target(int(step or 0), lora["file"], final=True))
        seen: dict[int, Target] = {}
        for t in out:
            if t.final or t.step not in seen:  # the final file wins over a checkpoint of the same step
                seen[t.step] = t
        return sorted(seen.values(), key=lambda t: t.step)

    def source_of(self, target: Target) -> str | None:
        """The job-folder file a target's weights were collected from (training_meta.json records it)."""
        if target.base:
            return None
        if target.final:
            return _source(self.meta.get("lora"))
        return next((_source(c) for c in self.meta.get("checkpoints") or [] if c.get("file") == target.file), None)


def _source(entry: dict[str, Any] | None) -> str | None:
    return entry.get("source") if isinstance(entry, dict) and isinstance(entry.get("source"), str) else None


def open_artifact(home: Path, artifact_id: str) -> ArtifactView:
    row = resolve_row(Path(home), artifact_id)
    folder = Path(row["path"])
    if not folder.is_dir():
        raise NotFoundError(f"artifact '{row['id']}' is indexed but its folder {folder} is gone",
                            hint="restore the folder; evaluation reads its weights")
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BadInputError(f"artifact '{row['id']}': cannot read {META_FILE} ({e})",
                            hint="evaluation needs the artifact's training_meta.json (output.save.training_meta)") from None
    spec = None
    if (folder / "spec.yaml").is_file():
        spec = load_spec(folder / "spec.yaml").spec
    return ArtifactView(id=row["id"], folder=folder, meta=meta, spec=spec, index_meta=row["meta"])


def select_targets(view: ArtifactView, which: str) -> list[Target]:
    """`all`, `last`, or a comma list of steps ('best' is not a choice here: it is what evaluation finds).
    The base model is always included: the rule measures prompt alignment against it."""
    available = view.targets()
    trained = [t for t in available if not t.base]
    if not trained:
        raise BadInputError(f"artifact '{view.id}' has no LoRA weights to evaluate",
                            hint="it was collected with output.save.lora_weights: false")
    which = (which or "all").strip().lower()
    if which == "all":
        return available
    if which == "last":
        return [available[0], trained[-1]]
    steps: list[int] = []
    for part in which.split(","):
        part = part.strip()
        if not part.isdigit():
            raise BadInputError(f"--checkpoints {which!r}: {part!r} is not a step number",
                                hint="use all, last, or steps like 250,500")
        steps.append(int(part))
    by_step = {t.step: t for t in trained}
    missing = [s for s in steps if s not in by_step and s != 0]
    if missing:
        have = ", ".join(str(t.step) for t in trained)
        raise BadInputError(f"--checkpoints: artifact '{view.id}' has no checkpoint at step {missing[0]}",
                            hint=f"kept steps: {have} (or use all / last)")
    return [available[0]] + [by_step[s] for s in sorted(set(steps)) if s != 0]


def training_image_dir(view: ArtifactView, override: Path | None) -> Path:
    if override is not None:
        p = Path(override).expanduser()
        if not p.is_dir():
            raise BadInputError(f"--train-images {p}: not a folder", hint="give the folder of training images")
        return p
    ds = view.meta.get("dataset") or {}
    candidates = [ds.get("prepared_dir"), ds.get("source")]
    if view.spec is not None:
        candidates.append(view.spec.dataset.path)
    for c in candidates:
        if c and Path(c).is_dir() and list_images(Path(c)):
            return Path(c)
    tried = ", ".join(str(c) for c in candidates if c) or "none recorded"
    raise BadInputError(f"artifact '{view.id}': its training images are not on this machine (tried: {tried})",
                        hint="pass --train-images DIR (style similarity and memorisation compare against them)")


def list_images(folder: Path) -> list[Path]:
    """Images under `folder` (recursively, no symlinks), sorted; at most MAX_TRAIN_IMAGES, evenly spread."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not p.is_symlink())
    if len(found) > MAX_TRAIN_IMAGES:
        stride = len(found) / MAX_TRAIN_IMAGES
        found = [found[int(i * stride)] for i in range(MAX_TRAIN_IMAGES)]
    return found


def training_captions(images: list[Path]) -> list[str]:
    out = []
    for p in images:
        txt = p.with_suffix(".txt")
        if txt.is_file():
            try:
                out.append(txt.read_text(encoding="utf-8").strip())
            except (OSError, UnicodeDecodeError):
                continue
    return out
