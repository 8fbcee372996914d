"""From what a user names (any artifact reference, `ID@STEP` and `ID@best` included) to the LoRA file, its hash,
trigger and base model.

Which artifact a reference names is decided by zlt.artifacts.resolve, the one resolver every command uses; this
module adds what inference needs: the weights of the step, the base model, the trigger.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zlt.artifacts.layout import GENERATIONS_DIR, LORA_FILE, checkpoint_file
from zlt.artifacts.resolve import BEST, LATEST, existing_folder, resolve, split_ref
from zlt.core.errors import BadInputError, NotFoundError
from zlt.core.fsutil import sha256_file
from zlt.core.paths import zlt_home
from zlt.infer.params import DEFAULT_SCALE
from zlt.lora.safetensors_io import read_header
from zlt.render.common import VARIANT_SAMPLING, sample_steps_guidance
from zlt.spec import load_spec

__all__ = ["GENERATIONS_DIR", "LATEST", "LORA_FILE", "ArtifactRef", "ResolvedLora", "describe", "lora_file",
           "resolve_artifact", "resolve_loras", "sampling_defaults"]


@dataclass(frozen=True)
class ArtifactRef:
    """An indexed artifact folder and what inference needs from it."""

    id: str
    path: Path
    base_model: dict[str, Any]  # training_meta.json's base_model: name, source, precision, variant, ...
    trigger: str  # modelspec.trigger_phrase of lora.safetensors ('' when none)
    recorded: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 recorded at collection
    step: int | None = None  # the checkpoint the reference named (ID@STEP, ID@best); None: the final weights
    resolution: int | None = None  # the training resolution (dataset.resolution): the default image side
    best_scale: float | None = None  # the LoRA scale of the evaluation that picked the best step (None: unknown)

    @property
    def base_name(self) -> str:
        return str(self.base_model.get("name") or "")

    @property
    def generations_dir(self) -> Path:
        return self.path / GENERATIONS_DIR


@dataclass(frozen=True)
class ResolvedLora:
    """One LoRA file ready to load: which artifact, which weights, their sha256, and the scale to apply."""

    artifact: ArtifactRef
    file: Path
    sha256: str
    scale: float
    checkpoint: int | None = None  # None: the final weights

    def to_dict(self) -> dict[str, Any]:
        return {"artifact_id": self.artifact.id, "file": str(self.file), "sha256": self.sha256, "scale": self.scale,
                "checkpoint": self.checkpoint, "base_model": self.artifact.base_name}


def _home(home: Path | None) -> Path:
    return Path(home) if home is not None else zlt_home()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _base_model(folder: Path) -> dict[str, Any]:
    meta = _read_json(folder / "training_meta.json")
    base = meta.get("base_model")
    if isinstance(base, dict) and base.get("name"):
        return base
    spec = folder / "spec.yaml"
    if spec.is_file():
        try:
            data = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
            base = ((data.get("model") or {}).get("base")) or {}
            if base.get("name"):
                return dict(base)
        except (OSError, yaml.YAMLError, AttributeError):
            pass
    return {}


def _resolution(folder: Path) -> int | None:
    """The training resolution: training_meta.json's dataset.resolution, else spec.yaml's."""
    meta = _read_json(folder / "training_meta.json")
    value = (meta.get("dataset") or {}).get("resolution") if isinstance(meta.get("dataset"), dict) else None
    if not isinstance(value, int) and (folder / "spec.yaml").is_file():
        try:
            data = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8")) or {}
            value = (data.get("dataset") or {}).get("resolution", 1024)
        except (OSError, yaml.YAMLError, AttributeError):
            value = None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _eval_scale(folder: Path) -> float | None:
    """The LoRA scale the artifact's last evaluation drew its checkpoints at (training_meta.json's eval)."""
    ev = _read_json(folder / "training_meta.json").get("eval")
    value = ev.get("scale") if isinstance(ev, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _trigger(folder: Path) -> str:
    try:
        return read_header(folder / LORA_FILE).metadata.get("modelspec.trigger_phrase", "") or ""
    except BadInputError:
        return ""


def resolve_artifact(ref: str, home: Path | None = None, *, field_name: str = "generate.loras",
                     step: int | str | None = None) -> ArtifactRef:
    """The artifact `ref` names (any form of zlt.artifacts.resolve; `step` is a checkpoint option beside it), with
    what inference needs. Errors name `field_name`."""
    try:
        picked = resolve(_home(home), ref, step=step)
        folder = existing_folder(picked.row)
    except NotFoundError as e:
        raise NotFoundError(f"{field_name}: {e.message}", hint=e.hint) from None
    except BadInputError as e:
        raise BadInputError(f"{field_name}: {e.message}", hint=e.hint) from None
    row = picked.row
    base = _base_model(folder)
    if not base:
        raise BadInputError(f"{field_name}: artifact '{row['id']}' does not say which base model it was trained on",
                            hint="its training_meta.json and spec.yaml lack model.base.name")
    recorded = {k: v.get("sha256") for k, v in (row["meta"].get("files") or {}).items() if isinstance(v, dict)}
    return ArtifactRef(id=row["id"], path=folder, base_model=base, trigger=_trigger(folder), recorded=recorded,
                       step=picked.step, resolution=_resolution(folder), best_scale=_eval_scale(folder))


def _names_best(use: Any) -> bool:
    return split_ref(str(use.artifact).strip())[1] == BEST or str(use.checkpoint).strip().lower() == BEST


def use_scale(use: Any, art: ArtifactRef) -> float:
    """The scale a LoraUse asks for; left out: the scale its evaluation picked `ID@best` at, else DEFAULT_SCALE."""
    if use.scale is not None:
        return float(use.scale)
    if _names_best(use) and art.best_scale is not None:
        return art.best_scale
    return DEFAULT_SCALE


def sampling_defaults(art: ArtifactRef) -> tuple[int, float]:
    """Steps and guidance the artifact was sampled with while training: its spec's training.sample settings, else
    its base model variant's (zlt.render.common.VARIANT_SAMPLING: turbo 9/0, deturbo 25/2, base 30/4)."""
    spec_file = art.path / "spec.yaml"
    if spec_file.is_file():
        try:
            return sample_steps_guidance(load_spec(spec_file).spec)
        except (BadInputError, OSError):
            pass  # an unreadable spec: the variant still says how the model samples
    return VARIANT_SAMPLING.get(str(art.base_model.get("variant") or "turbo"), VARIANT_SAMPLING["turbo"])


def lora_file(art: ArtifactRef, checkpoint: int | None, *, field_name: str = "generate.checkpoint") -> Path:
    """The final weights, or the kept checkpoint of step `checkpoint`."""
    if checkpoint is None:
        path = art.path / LORA_FILE
        if not path.is_file():
            raise NotFoundError(f"{field_name}: artifact '{art.id}' has no {LORA_FILE}",
                                hint="it was collected with output.save.lora_weights: false; pick a checkpoint")
        return path
    path = art.path / checkpoint_file(checkpoint)
    if not path.is_file():
        kept = sorted(int(p.stem.removeprefix("step_")) for p in (art.path / "checkpoints").glob("step_*.safetensors")
                      if p.stem.removeprefix("step_").isdigit())
        raise NotFoundError(f"{field_name}: artifact '{art.id}' has no checkpoint at step {checkpoint}",
                            hint=f"kept steps: {', '.join(map(str, kept)) or 'none (only the final weights)'}")
    return path


def resolve_loras(uses: list[Any], home: Path | None = None, *, prefix: str = "generate") -> list[ResolvedLora]:
    """Every LoraUse -> ResolvedLora; all on one base model; each file checked against its recorded sha256. The
    checkpoint is the use's `checkpoint`, or the step its artifact reference names (ID@STEP, ID@best)."""
    out: list[ResolvedLora] = []
    for use in uses:
        art = resolve_artifact(use.artifact, home, field_name=f"{prefix}.loras", step=use.checkpoint)
        path = lora_file(art, art.step, field_name=f"{prefix}.checkpoint")
        digest = sha256_file(path)
        rel = path.relative_to(art.path).as_posix()
        expected = art.recorded.get(rel)
        if expected and expected != digest:
            raise BadInputError(f"{prefix}.loras: {path} does not match the sha256 recorded when it was collected",
                                hint=f"run 'zlt artifacts verify {art.id}'")
        out.append(ResolvedLora(artifact=art, file=path, sha256=digest, scale=use_scale(use, art), checkpoint=art.step))
    digests = [r.sha256 for r in out]
    if len(set(digests)) != len(digests):
        raise BadInputError(f"{prefix}.loras: the same LoRA file is listed twice",
                            hint="list each LoRA once, with the scale you want")
    bases = {r.artifact.base_name for r in out}
    if len(bases) > 1:
        raise BadInputError(f"{prefix}.loras: the LoRAs were trained on different base models ({', '.join(sorted(bases))})",
                            hint="stack only LoRAs of one base model")
    return out


def describe(art: ArtifactRef) -> dict[str, Any]:
    d = asdict(art)
    d["path"] = str(art.path)
    d.pop("recorded", None)
    return d
