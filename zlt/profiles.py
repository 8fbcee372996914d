"""Hardware profiles: what memory levers a GPU size pulls, per backend, and the coefficients the VRAM
estimator uses. Profiles are YAML files in `profiles/`; they are validated like specs."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zlt.core.errors import BadInputError
from zlt.core.paths import data_dir


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AiToolkitLevers(_Strict):
    quantize: bool = Field(description="Quantise the transformer (model.quantize).")
    qtype: str = Field("qfloat8", description="Transformer quantisation type.")
    quantize_te: bool = Field(description="Quantise the Qwen3 text encoder (model.quantize_te).")
    qtype_te: str = Field("qfloat8", description="Text encoder quantisation type.")
    low_vram: bool = Field(description="ai-toolkit's low_vram: keep parts on the CPU while loading.")
    cache_text_embeddings: bool = Field(False, description="Cache text embeddings and unload the text encoder.")
    gradient_checkpointing: bool = Field(
        True, description="train.gradient_checkpointing when the spec leaves training.gradient_checkpointing unset."
    )


class MusubiLevers(_Strict):
    fp8_base: bool = Field(description="--fp8_base: DiT weights in fp8.")
    fp8_scaled: bool = Field(
        description="--fp8_scaled; must equal fp8_base: zlt renders the two together, as musubi's docs advise."
    )
    fp8_llm: bool = Field(description="--fp8_llm: text encoder in fp8 while caching.")
    blocks_to_swap: int = Field(0, ge=0, le=28, description="--blocks_to_swap N: DiT blocks offloaded to CPU.")
    gradient_checkpointing: bool = Field(
        True, description="--gradient_checkpointing when the spec leaves training.gradient_checkpointing unset."
    )
    gradient_checkpointing_cpu_offload: bool = Field(False, description="--gradient_checkpointing_cpu_offload.")

    @model_validator(mode="after")
    def _fp8_pair(self) -> MusubiLevers:
        if self.fp8_scaled != self.fp8_base:
            raise ValueError("fp8_scaled must equal fp8_base (zlt renders --fp8_base with --fp8_scaled)")
        return self


class LightningLevers(_Strict):
    device: str = Field("cuda", description="Torch device the built-in trainer uses.")
    precision: str = Field("bf16-mixed", description="Fabric precision plugin.")
    gradient_checkpointing: bool = Field(
        True, description="Gradient checkpointing when the spec leaves training.gradient_checkpointing unset."
    )
    cache_text_embeddings: bool = Field(True, description="Encode captions once and free the text encoder.")


class EstimatorCoefficients(_Strict):
    """Coefficients of `zlt.preflight.vram.estimate` (GiB); docs/vram.md says where each comes from and checks the
    result against published figures."""

    transformer_params_b: float = Field(6.15, gt=0, description="Transformer parameters, billions.")
    text_encoder_params_b: float = Field(4.02, gt=0, description="Qwen3 text encoder parameters, billions.")
    vae_gb: float = Field(0.16, ge=0, description="VAE weights in bf16, GiB.")
    quant_bytes_per_param: float = Field(
        1.05, gt=0, description="Bytes per parameter of an 8-bit (float8/int8) model: weights, scales, layers kept in bf16."
    )
    act_gb_per_ktoken: float = Field(
        0.58, ge=0, description="Activations per 1k tokens (image + caption) per sample, gradient checkpointing on, GiB."
    )
    act_gb_per_ktoken_no_gc: float = Field(
        6.0, ge=0, description="Activations per 1k tokens per sample without gradient checkpointing, GiB."
    )
    sample_gb: float = Field(
        2.5, ge=0, description="Peak of generating one 1024 px sample during training (VAE decode), GiB; scales with pixels."
    )
    overhead_gb: float = Field(0.8, ge=0, description="CUDA context and library workspaces, GiB (allocator slack is in margin).")
    margin: float = Field(0.10, ge=0, lt=1, description="Safety margin, fraction of the estimate.")


class HardwareProfile(_Strict):
    name: str = Field(description="Profile name, e.g. '24gb'.")
    vram_gb: float = Field(ge=0, description="GPU memory the profile is written for, GB (0: CPU only).")
    description: str = Field(description="Which cards this profile is for.")
    bf16: bool = Field(True, description="The target GPU supports bf16.")
    resolution_cap: int = Field(ge=16, le=2048, description="Largest training resolution this profile allows.")
    max_batch_size: int = Field(ge=1, description="Largest batch size per GPU.")
    expected_vram_gb: float = Field(ge=0, description="Peak VRAM the profile's levers are expected to need at its cap.")
    ai_toolkit: AiToolkitLevers = Field(description="ai-toolkit levers.")
    musubi: MusubiLevers = Field(description="musubi-tuner levers.")
    lightning: LightningLevers = Field(description="Built-in trainer levers.")
    estimator: EstimatorCoefficients = Field(default_factory=EstimatorCoefficients, description="VRAM estimator.")

    @property
    def is_cpu(self) -> bool:
        return self.vram_gb == 0


def profiles_dir() -> Path:
    return data_dir("profiles")


@functools.lru_cache(maxsize=1)
def load_profiles() -> dict[str, HardwareProfile]:
    """All bundled profiles, by name, smallest first."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = []
    for path in sorted(profiles_dir().glob("*.yaml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        out.append(HardwareProfile.model_validate(data))
    out.sort(key=lambda p: p.vram_gb)
    return {p.name: p for p in out}


def get_profile(name: str) -> HardwareProfile:
    profiles = load_profiles()
    if name not in profiles:
        raise BadInputError(
            f"--profile {name!r}: no such hardware profile", hint=f"use one of: auto, {', '.join(profiles)}"
        )
    return profiles[name]


def gpu_profiles() -> list[HardwareProfile]:
    return [p for p in load_profiles().values() if not p.is_cpu]


def largest_profile_within(vram_gb: float) -> HardwareProfile | None:
    """The largest GPU profile whose memory does not exceed the card's."""
    fitting = [p for p in gpu_profiles() if p.vram_gb <= vram_gb + 0.5]
    return fitting[-1] if fitting else None
