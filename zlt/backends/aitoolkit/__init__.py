"""ostris/ai-toolkit: one `run.py CONFIG` process with a job YAML, its own log file, automatic resume from the newest
checkpoint and `optimizer.pt` in its training folder, and a warm start through `network.pretrained_lora_path`."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt.backends.aitoolkit.parity import AITOOLKIT_MAP
from zlt.backends.aitoolkit.parse import parse_aitoolkit
from zlt.backends.aitoolkit.render import CONFIG_NAME, gradient_checkpointing_lever, render_aitoolkit
from zlt.backends.base import Backend, InstallFacts, LineParser, LogLines, ProfileLever
from zlt.backends.memory import CAPTIONS_CACHED_NOTE
from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.spec.models import JobSpec

# toolkit/lora_special.py prints the network it built: "create LoRA network. base dim (rank): R, alpha: A"
_NETWORK = re.compile(r"create LoRA network\. base dim \(rank\): (\d+), alpha: ([\d.eE+-]+)")


class AiToolkit(Backend):
    name = "ai-toolkit"
    title = "ostris/ai-toolkit"
    install = InstallFacts(env="ZLT_AI_TOOLKIT", config_key="ai_toolkit", flag="--ai-toolkit")
    loss_is_next_steps = True  # it sets a step's loss on its bar before moving the bar on
    log_file = "ai-toolkit.log"
    init_format = "ai-toolkit"
    lora_weight_grad_bytes = 4.0  # it trains the network in the train dtype (bf16)
    quantizes_text_encoder = True

    def render(self, spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
        return render_aitoolkit(spec, profile, ctx)

    def gradient_checkpointing_lever(self, profile: HardwareProfile) -> tuple[bool, str]:
        return gradient_checkpointing_lever(profile)

    def parity(self) -> dict[str, Any]:
        return AITOOLKIT_MAP

    def parser(self, job_name: str) -> LineParser:
        return lambda line: parse_aitoolkit(line, job_name)

    def memory_levers(self, spec: JobSpec, profile: HardwareProfile, *, base: float, q8: float, gc: bool,
                      gc_source: str, sample_res: int | None, quantize: bool | None,
                      notes: list[str]) -> dict[str, Any]:
        # it moves the text encoder to the GPU in bf16 and quantises it there; with low_vram the transformer waits
        # in host memory meanwhile
        lev, mode = profile.ai_toolkit, spec.model.base.quantize
        q_tr = lev.quantize if mode == "auto" else mode == "float8"
        q_te = lev.quantize_te if mode == "auto" else mode == "float8"
        if lev.cache_text_embeddings:
            notes.append(CAPTIONS_CACHED_NOTE)
        return {"transformer_bytes": q8 if q_tr else base, "text_encoder_bytes": q8 if q_te else base,
                "text_encoder_resident": not lev.cache_text_embeddings,
                "transformer_on_gpu_while_loading": not lev.low_vram}

    def profile_levers(self, profile: HardwareProfile, fits: Callable[[HardwareProfile], bool]) -> list[ProfileLever]:
        out = []
        if not profile.ai_toolkit.cache_text_embeddings:
            out.append(ProfileLever("cache_text_embeddings", "cache text embeddings", "ai_toolkit",
                                    "cache_text_embeddings", True))
        if not profile.ai_toolkit.low_vram:
            out.append(ProfileLever("low_vram", "low_vram (load via host memory)", "ai_toolkit", "low_vram", True))
        return out

    def resume_sources(self, out: Path, name: str, final_step: int) -> dict[str, Any] | None:
        folder = out / name
        final, optim = folder / f"{name}.safetensors", folder / "optimizer.pt"
        if not (final.is_file() and optim.is_file()):
            return None
        return {"copy": {str(final): f"{name}/{final.name}", str(optim): f"{name}/optimizer.pt"}}

    def rendered_facts(self, render_dir: Path, load: Callable[[Path, str], Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        doc = load(render_dir / CONFIG_NAME, "yaml")
        try:
            proc = doc["config"]["process"][0]
        except (TypeError, KeyError, IndexError):
            return out
        train, model, net = proc.get("train") or {}, proc.get("model") or {}, proc.get("network") or {}
        out["precision"] = train.get("dtype")
        out["timestep"] = {k: train[k] for k in ("timestep_type", "content_or_style", "noise_scheduler") if k in train}
        out["adapter"] = model.get("assistant_lora_path")
        out["dropout"] = net.get("dropout")
        return out

    def reported_facts(self, phases: list[str], log_lines: LogLines, header: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "Merging in assistant LoRA" in phases:
            out["adapter_merged"] = True
        for line in log_lines((b"create LoRA network",)):
            m = _NETWORK.search(line)
            if m:
                out["alpha"] = float(m.group(2))
        return out


AI_TOOLKIT = AiToolkit()
