"""The built-in trainer (`python -m zlt.trainer trainer.json`, Lightning Fabric): runs in zlt's own Python, on
several GPUs (DDP) or the CPU, prints zlt's own events, and is the one backend that trains the tiny test model."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt import __version__
from zlt.backends.base import Backend, LineParser, LogLines, ProfileLever
from zlt.backends.lightning.memory import memory_levers
from zlt.backends.lightning.parity import LIGHTNING_MAP
from zlt.backends.lightning.parse import parse_lightning
from zlt.backends.lightning.render import CONFIG_NAME, gradient_checkpointing_lever, render_lightning
from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.spec.models import JobSpec
from zlt.trainer import checkpoint as ck

# zlt/trainer/loop.py phase lines: "steps 1..60 on cpu (32-true); effective batch ...",
# "merged training adapter a.safetensors into 240 layers (off while sampling)"
_TRAINING = re.compile(r"^steps \d+\.\.\d+ on [^(]+\(([\w-]+)\)")
_MERGED = re.compile(r"^merged training adapter (.+?) into (\d+) layers")


class Lightning(Backend):
    name = "lightning"
    title = "the built-in trainer"
    builtin = True
    trains_tiny_model = True
    multi_gpu = True
    init_format = "diffusers"

    def render(self, spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
        return render_lightning(spec, profile, ctx, self)

    def gradient_checkpointing_lever(self, profile: HardwareProfile) -> tuple[bool, str]:
        return gradient_checkpointing_lever(profile)

    def parity(self) -> dict[str, Any]:
        return LIGHTNING_MAP

    def parser(self, job_name: str) -> LineParser:
        return parse_lightning

    def trainer_version(self, commit: str | None) -> str | None:
        return f"zlt {__version__}"

    def memory_levers(self, spec: JobSpec, profile: HardwareProfile, *, base: float, q8: float, gc: bool,
                      gc_source: str, sample_res: int | None, quantize: bool | None,
                      notes: list[str]) -> dict[str, Any]:
        return memory_levers(self, spec, profile, base=base, q8=q8, gc=gc, gc_source=gc_source, quantize=quantize,
                             notes=notes)

    def profile_levers(self, profile: HardwareProfile, fits: Callable[[HardwareProfile], bool]) -> list[ProfileLever]:
        if profile.lightning.cache_text_embeddings:
            return []
        return [ProfileLever("cache_text_embeddings", "cache text embeddings", "lightning", "cache_text_embeddings",
                             True)]

    def resume_sources(self, out: Path, name: str, final_step: int) -> dict[str, Any] | None:
        found = dict(ck.step_files(out / ck.STATE_DIR, name, ".json"))
        j = found.get(final_step)
        if j is None:
            return None
        return {"copy": {str(j): f"{ck.STATE_DIR}/{j.name}", str(j.with_suffix(".safetensors")):
                         f"{ck.STATE_DIR}/{j.with_suffix('.safetensors').name}"}}

    def rendered_facts(self, render_dir: Path, load: Callable[[Path, str], Any]) -> dict[str, Any]:
        doc = load(render_dir / CONFIG_NAME, "json")
        if not isinstance(doc, dict):
            return {}
        tr, model, lora = doc.get("training") or {}, doc.get("model") or {}, doc.get("lora") or {}
        return {"precision": tr.get("precision"),
                "timestep": {k: tr[k] for k in ("timestep_type", "timestep_shift", "content_or_style") if k in tr},
                "adapter": model.get("training_adapter"), "dropout": lora.get("dropout")}

    def reported_facts(self, phases: list[str], log_lines: LogLines, header: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for msg in phases:
            m = _MERGED.match(msg)
            if m:
                out["adapter"], out["adapter_merged"] = m.group(1), True
            m = _TRAINING.match(msg)
            if m:
                out["precision"] = m.group(1)
        return out


LIGHTNING = Lightning()
