"""Where evaluation images come from: a seam, so the evaluator does not care who draws them.

`ImageFn(lora, requests) -> images`: `lora` is a LoRA .safetensors file (None: the base model alone), `requests`
is a list of (prompt, seed); one PIL image per request, in order. Whoever implements it loads the pipeline once
and swaps LoRA weights between calls. `PipelineImages` is the implementation zlt uses by default: diffusers'
ZImagePipeline with `load_lora_weights` / `set_adapters` / `delete_adapters` per checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.errors import EnvNotReadyError

ImageFn = Callable[[Path | None, list[tuple[str, int]]], list[Any]]


@dataclass
class DrawSettings:
    """The artifact's inference settings (the spec's sampling settings unless overridden)."""

    base_model: str
    precision: str = "bf16"
    steps: int = 9
    guidance: float = 0.0
    size: int = 1024
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_pipeline(settings: DrawSettings, device: str):
    """ZImagePipeline for the base model: the built-in tiny one, a local folder, or a hub id (cache only offline)."""
    import torch

    from zlt.spec.models import TINY_MODEL

    if settings.base_model == TINY_MODEL:
        from zlt.trainer.tiny import build_tiny_pipeline

        return build_tiny_pipeline().to(device)
    from diffusers import ZImagePipeline

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[settings.precision]
    if device == "cpu" and dtype != torch.float32:
        dtype = torch.float32  # half precision on a CPU is slow or unsupported
    local = Path(settings.base_model).expanduser().is_dir()
    try:
        pipe = ZImagePipeline.from_pretrained(settings.base_model, torch_dtype=dtype,
                                              local_files_only=local or _offline())
    except (OSError, ValueError) as e:
        raise EnvNotReadyError(
            f"base model: cannot load {settings.base_model}: {e}",
            hint=f"download it first (hf download {settings.base_model}) or point model.base.name at a local "
                 "diffusers folder",
        ) from e
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


class PipelineImages:
    """One loaded pipeline; LoRA files are swapped in and out per call."""

    def __init__(self, settings: DrawSettings, device: str | None = None, pipe: Any = None) -> None:
        import torch

        self.settings = settings
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.pipe = pipe if pipe is not None else load_pipeline(settings, self.device)
        self.loads = 0 if pipe is not None else 1
        self._n = 0

    def __call__(self, lora: Path | None, requests: list[tuple[str, int]]) -> list[Any]:
        import torch

        s, pipe = self.settings, self.pipe
        name = None
        if lora is not None:
            self._n += 1
            name = f"eval{self._n}"
            pipe.load_lora_weights(str(lora), adapter_name=name)
            pipe.set_adapters([name], adapter_weights=[s.scale])
        try:
            out = []
            for prompt, seed in requests:
                gen = torch.Generator(device="cpu").manual_seed(int(seed))
                out.append(pipe(prompt=prompt, height=s.size, width=s.size, num_inference_steps=s.steps,
                                guidance_scale=s.guidance, generator=gen).images[0])
            return out
        finally:
            if name is not None:
                pipe.delete_adapters(name)
