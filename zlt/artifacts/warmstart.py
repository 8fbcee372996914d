"""How a retrain job starts from its parent artifact, per backend, using each trainer's own mechanism.

Two modes, chosen by `zlt retrain` and written to the job's `retrain.json`:
- `resume`: dataset and settings unchanged and the parent's trainer state still in its job folder. The state is
  copied into the new job's output folder and the job runs as a resume: built-in trainer `output.resume` (weights,
  optimizer, scheduler, RNG, data position), ai-toolkit's automatic resume from the newest `<name>*.safetensors`
  in its training folder plus `optimizer.pt`, musubi `--resume <name>-stepN-state`.
- `warm`: the LoRA starts from the artifact's weights, optimizer and schedule fresh: built-in trainer
  `output.init_lora`, ai-toolkit `network.pretrained_lora_path`, musubi `--network_weights`.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt import backends
from zlt.artifacts.lineage import read_retrain
from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_text
from zlt.lora.convert import LoraModule, LoraWeights, read_lora, render_lora
from zlt.lora.safetensors_io import RawTensor, write_file

WARM_DIR = "warm_start"


@dataclass
class WarmStart:
    resume: bool = False  # run as a resume from the seeded state
    init_lora: Path | None = None  # warm start: weights file in the backend's key layout


def init_file(job_dir: Path, backend: str) -> Path:
    return Path(job_dir) / WARM_DIR / f"init.{backends.get(backend).init_format}.safetensors"


def write_init_lora(src: Path, dest: Path, *, backend: str, rank: int, alpha: float) -> Path:
    """The artifact's LoRA rescaled so that a network of (rank, alpha) computes the same update, in the key layout
    the backend loads. A different rank cannot be warm-started: BadInputError."""
    b = backends.get(backend)
    weights, _meta = read_lora(src)
    if weights.rank != rank:
        raise BadInputError(f"model.lora.rank: the parent was trained at rank {weights.rank}, not {rank}",
                            hint=f"keep rank {weights.rank} to start from its weights, or submit a new job")
    target = alpha / rank
    out = LoraWeights(source_format=weights.source_format)
    for mod, m in weights.modules.items():
        f = math.sqrt(m.scale / target)
        down = RawTensor.from_float32(m.down.to_float32() * f, "F32")
        up = RawTensor.from_float32(m.up.to_float32() * f, "F32")
        # kohya files carry alpha (musubi loads it with the weights); the other layouts mean alpha == rank and the
        # network applies the spec's alpha on top, which the rescale above accounts for
        out.modules[mod] = LoraModule(down=down, up=up, alpha=alpha if b.init_keeps_alpha else None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_file(dest, render_lora(out, b.init_format), {"zlt.warm_start_from": str(src)})
    return dest


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dest)


def resume_sources(parent_job_dir: Path, backend: str, name: str, final_step: int | None) -> dict[str, Any] | None:
    """What to copy into a new job's output folder so that its trainer resumes at the parent's final step; None when
    the parent's job folder no longer holds a state of that step."""
    out = Path(parent_job_dir) / "output"
    if not out.is_dir() or final_step is None:
        return None
    return backends.get(backend).resume_sources(out, name, final_step)


def apply_warm_start(job_dir: Path, backend: str, output_dir: Path) -> WarmStart:
    """Called by the runner before rendering: seeds the output folder of a resume-mode retrain with the parent's
    state (what is already there stays: a retried attempt keeps the newer state it trained) and says how to
    render: resume, or start from `init_lora`."""
    doc = read_retrain(Path(job_dir))
    if not doc:
        return WarmStart()
    if doc.get("mode") == "resume":
        for src, rel in (doc.get("copy") or {}).items():
            dest = Path(output_dir) / rel
            if dest.exists():
                continue
            if not Path(src).exists():
                raise BadInputError(f"retrain: the parent's trainer state {src} is gone",
                                    hint="retrain with --steps N to start from the artifact's weights instead")
            _copy(Path(src), dest)
        return WarmStart(resume=True)
    init = init_file(job_dir, backend)
    if not init.is_file():
        raise BadInputError(f"retrain: {init} is missing", hint="submit the retrain again")
    return WarmStart(init_lora=init)


def write_retrain_file(job_dir: Path, doc: dict[str, Any]) -> None:
    atomic_write_text(Path(job_dir) / "retrain.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
