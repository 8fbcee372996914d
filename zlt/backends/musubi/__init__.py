"""kohya-ss/musubi-tuner: separate caching steps then `accelerate launch zimage_train_network.py`, local weight
files only, resume from a `-state` folder (its step counter restarts at 0), warm start through `--network_weights`
in kohya keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt.backends.base import Backend, InstallFacts, LineParser, LogLines, ProfileLever
from zlt.backends.memory import N_BLOCKS
from zlt.backends.musubi.parity import MUSUBI_MAP
from zlt.backends.musubi.parse import parse_musubi
from zlt.backends.musubi.render import gradient_checkpointing_lever, render_musubi
from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.run.checkpoints import RESUME_DIR, latest_state
from zlt.spec.models import JobSpec

SWAP_STEPS = (4, 8, 16, 24, 28)  # musubi allows up to 28 of the 30 blocks
_MERGED = "all weights merged: "  # its log line once the training adapter is merged


def _flag(argv: list[str], name: str) -> str | None:
    if name in argv:
        i = argv.index(name)
        return argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "true"
    return None


class Musubi(Backend):
    name = "musubi"
    title = "kohya-ss/musubi-tuner"
    install = InstallFacts(env="ZLT_MUSUBI", config_key="musubi", flag="--musubi", probe_src="src",
                           accelerate_cli=True)
    reads_weight_files = True
    needs_hub_tokenizer = True
    flips_in_prepare = True
    resumes_from_state = True
    init_format = "kohya"
    init_keeps_alpha = True  # kohya files carry alpha; musubi loads it with the weights
    lora_blocks = N_BLOCKS  # its lora_zimage.py adapts the main blocks only

    def render(self, spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
        return render_musubi(spec, profile, ctx)

    def gradient_checkpointing_lever(self, profile: HardwareProfile) -> tuple[bool, str]:
        return gradient_checkpointing_lever(profile)

    def parity(self) -> dict[str, Any]:
        return MUSUBI_MAP

    def parser(self, job_name: str) -> LineParser:
        return parse_musubi

    def memory_levers(self, spec: JobSpec, profile: HardwareProfile, *, base: float, q8: float, gc: bool,
                      gc_source: str, sample_res: int | None, quantize: bool | None,
                      notes: list[str]) -> dict[str, Any]:
        lev, mode = profile.musubi, spec.model.base.quantize
        notes.append("musubi encodes captions in a separate step; the text encoder is not loaded while training")
        return {
            "transformer_bytes": q8 if (lev.fp8_base if mode == "auto" else mode == "float8") else base,
            "load_text_encoder_bytes": q8 if (lev.fp8_llm if mode == "auto" else mode == "float8") else base,
            "activation_cpu_offload": gc and lev.gradient_checkpointing_cpu_offload,
            "swapped_blocks": lev.blocks_to_swap,
            "vae_resident": sample_res is not None,  # it trains on cached latents; the VAE loads only to sample
        }

    def profile_levers(self, profile: HardwareProfile, fits: Callable[[HardwareProfile], bool]) -> list[ProfileLever]:
        have = profile.musubi.blocks_to_swap
        if have >= SWAP_STEPS[-1]:
            return []
        steps = [n for n in SWAP_STEPS if n > have]
        fitting = [n for n in steps if fits(profile.model_copy(
            update={"musubi": profile.musubi.model_copy(update={"blocks_to_swap": n})}))]
        n = fitting[0] if fitting else steps[-1]
        return [ProfileLever("low_vram", f"swap {n} blocks to host memory", "musubi", "blocks_to_swap", n)]

    def host_ram(self, profile: HardwareProfile, transformer_gb: float, text_encoder_gb: float) -> tuple[float, float]:
        # swapped blocks live in host memory; the text encoder runs in its own process before training
        return transformer_gb * profile.musubi.blocks_to_swap / N_BLOCKS, 0.0

    def resume_sources(self, out: Path, name: str, final_step: int) -> dict[str, Any] | None:
        # musubi's `--save_state` also saves `<name>-state` when training ends (utils/train_utils.py
        # save_state_on_train_end); a resumed parent wrote it under output/resume_from_<step>/.
        folders = [out] + [p for p in out.iterdir() if p.is_dir() and RESUME_DIR.match(p.name)]
        last = [f / f"{name}-state" for f in folders if (f / f"{name}-state").is_dir()]
        if last:
            src = max(last, key=lambda p: p.stat().st_mtime)
        else:
            st = latest_state(out, name)
            if st is None or st.step != final_step:
                return None
            src = st.path
        # named by the global step, so the runner resumes at the parent's step (musubi restarts its counter at 0)
        return {"copy": {str(src): f"{name}-step{final_step:08d}-state"}}

    def rendered_facts(self, render_dir: Path, load: Callable[[Path, str], Any]) -> dict[str, Any]:
        argvs = load(render_dir / "argv.json", "json")
        argv = [str(a) for a in argvs[-1]] if isinstance(argvs, list) and argvs and isinstance(argvs[-1], list) else []
        drop = _flag(argv, "--network_dropout")
        return {"precision": _flag(argv, "--mixed_precision"),
                "timestep": {k: v for k, v in (("timestep_sampling", _flag(argv, "--timestep_sampling")),
                                                ("discrete_flow_shift", _flag(argv, "--discrete_flow_shift")),
                                                ("weighting_scheme", _flag(argv, "--weighting_scheme")))
                             if v is not None},
                "adapter": _flag(argv, "--base_weights"),
                "dropout": float(drop) if drop not in (None, "true") else None}

    def reported_facts(self, phases: list[str], log_lines: LogLines, header: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for line in log_lines((_MERGED.encode(),)):
            out["adapter"], out["adapter_merged"] = line[len(_MERGED):].strip(), True
        if header.get("ss_mixed_precision"):
            out["precision"] = header["ss_mixed_precision"]
        ts = {k: header[f"ss_{k}"] for k in ("timestep_sampling", "discrete_flow_shift", "weighting_scheme")
              if header.get(f"ss_{k}") not in (None, "", "None")}
        if ts:
            out["timestep"] = ts
        return out


MUSUBI = Musubi()
