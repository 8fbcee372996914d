"""What was actually trained, from what the run itself left behind; never from the spec alone.

Ground truth, best first, per fact:
- module set, rank, alpha: the saved LoRA's own keys (`.alpha` in kohya/comfyui files, peft's
  `lora_adapter_metadata` in diffusers files; no alpha in an ai-toolkit file means alpha = rank, which is how
  every loader reads it, and ai-toolkit's Z-Image (peft) path forces it: `toolkit/lora_special.py` sets
  `alpha = lora_dim` and prints `create LoRA network. base dim (rank): R, alpha: A`);
- precision, timestep scheme, adapter: the trainer's own reports (the file header musubi writes, its
  `all weights merged: ...` line, ai-toolkit's `Merging in assistant LoRA`, the built-in trainer's phase
  lines), then the rendered files in the job's `render/` folder (what the trainer was handed);
- steps: the file's header step.
Each fact records where it came from; where it differs from the spec a warning says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zlt import backends
from zlt.artifacts.jobdir import JobFiles
from zlt.lora.convert import LoraWeights
from zlt.trainer.config import map_target_modules

_BLOCK = re.compile(r"^(?:layers|noise_refiner|context_refiner)\.\d+\.")
LOG_SCAN_BYTES = 64 * 1024 * 1024  # the lines looked for come before training; a huge log is not read to its end


def target_name(module: str) -> str:
    """`layers.3.attention.to_out.0` -> `attention.to_out` (the spec's target names)."""
    name = _BLOCK.sub("", module)
    for tail in ("attention.to_out.0", "adaLN_modulation.0"):
        if name == tail:
            return tail[:-2]
    return name


def spec_targets(names: list[str]) -> list[str]:
    """The spec's target list in the same names as `target_name` (short forms expanded)."""
    peft, unknown = map_target_modules(names)
    return sorted({target_name(t) for t in peft} | {n for _i, n in unknown})


@dataclass
class Trained:
    rank: int
    alpha: float
    target_modules: list[str]
    modules: int
    steps: int | None = None
    precision: str | None = None
    adapter: str | None = None  # the merged training adapter (path or name); None: none merged
    adapter_merged: bool | None = None  # None: unknown
    timestep: dict[str, Any] = field(default_factory=dict)
    dropout: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lora_config(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, "target_modules": self.target_modules,
                "modules": self.modules}


# --- what the trainer was handed (render/) ---------------------------------------------------------------

def _load(path: Path, kind: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        if kind == "yaml":
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    except Exception:  # noqa: BLE001 - yaml's errors: an unreadable render is a missing source, not a failure
        return None


def _rendered(job: JobFiles) -> dict[str, Any]:
    return backends.get(job.backend).rendered_facts(job.job_dir / "render", _load)


# --- what the trainer reported (events, train.log, the file header) ---------------------------------------

def _log_lines(job: JobFiles, prefixes: tuple[str, ...]):
    path = job.job_dir / "train.log"
    try:
        with open(path, "rb") as fh:
            data = fh.read(LOG_SCAN_BYTES)
    except OSError:
        return
    for raw in re.split(rb"[\r\n]+", data):
        if raw.startswith(prefixes):
            yield raw.decode("utf-8", "replace").strip()


def _reported(job: JobFiles, header: dict[str, str]) -> dict[str, Any]:
    phases = [e.get("message") or "" for e in job.events if e.get("type") == "phase"]
    return backends.get(job.backend).reported_facts(phases, lambda prefixes: _log_lines(job, prefixes), header)


def describe_trained(job: JobFiles, weights: LoraWeights, header: dict[str, str], step: int | None) -> Trained:
    """The facts of the weights file `weights` (with its header) of this job."""
    recorded = any(m.alpha is not None for m in weights.modules.values())
    t = Trained(rank=weights.rank, alpha=weights.alpha, modules=len(weights.modules), steps=step,
                target_modules=sorted({target_name(m) for m in weights.modules}))
    t.sources.update({"target_modules": "saved LoRA keys", "rank": "saved LoRA keys",
                      "alpha": "saved LoRA keys" if recorded else "saved LoRA keys (no alpha: alpha = rank)",
                      "steps": "saved LoRA header"})
    reported, rendered = _reported(job, header), _rendered(job)
    if "alpha" in reported and not recorded and reported["alpha"] != t.alpha:
        t.sources["alpha"] += f"; the trainer logged alpha {reported['alpha']:g}"
    for key in ("precision", "timestep"):
        if reported.get(key):
            setattr(t, key, reported[key])
            t.sources[key] = "trainer output"
        elif rendered.get(key):
            setattr(t, key, rendered[key])
            t.sources[key] = f"render/ ({job.backend} config)"
    if reported.get("adapter_merged"):
        t.adapter_merged, t.adapter = True, reported.get("adapter") or rendered.get("adapter")
        t.sources["adapter"] = "trainer output"
    elif rendered.get("adapter"):
        t.adapter, t.adapter_merged = str(rendered["adapter"]), None
        t.sources["adapter"] = "render/ only: the trainer did not report merging it"
    else:
        t.adapter_merged = False
        t.sources["adapter"] = f"render/ ({job.backend} config): none"
    if rendered.get("dropout") is not None:
        t.dropout = float(rendered["dropout"])
    return t


def differences(trained: Trained, job: JobFiles) -> list[str]:
    """Plain warnings where what was trained is not what the spec says."""
    spec = job.spec
    lora = spec.model.lora
    out = []
    wanted = spec_targets(list(lora.target_modules))
    if trained.target_modules != wanted:
        out.append(f"{job.backend} trained {trained.modules} LoRA modules of {', '.join(trained.target_modules)}; "
                   f"the spec lists {', '.join(wanted)} (metadata records what was trained)")
    if trained.rank != lora.rank:
        out.append(f"{job.backend} trained rank {trained.rank}; the spec says {lora.rank}")
    if abs(trained.alpha - float(lora.alpha)) > 1e-6:
        out.append(f"{job.backend} trained alpha {trained.alpha:g} (rank {trained.rank}); the spec says "
                   f"{float(lora.alpha):g} (metadata records {trained.alpha:g})")
    return out
