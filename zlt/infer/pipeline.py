"""Loaded Z-Image pipelines, kept between generations: a small LRU by base model, LoRAs swapped in place.

Loading the 6B base model takes tens of seconds; loading a LoRA into a loaded pipeline takes a fraction of one.
So a pipeline stays loaded (`PipelineCache`), each LoRA is loaded once under an adapter name derived from its
sha256, and a request only changes which adapters are active and at which scale (`set_adapters`). The img2img and
ControlNet pipelines are built from the same components (no second copy of any weight).
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.errors import BadInputError, EnvNotReadyError

OFFLOAD_BELOW_GB = 24.0


@dataclass(frozen=True)
class DevicePlan:
    device: str  # cpu | cuda
    dtype: str  # fp32 | bf16 | fp16
    offload: bool  # enable_model_cpu_offload (GPUs below 24 GB)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype, "offload": self.offload}


def plan_device(base_model: dict[str, Any], vram_gb: float | None = None) -> DevicePlan:
    """Where and in which dtype the pipeline runs: the tiny model on the CPU in fp32; a real model on CUDA in bf16
    (fp16 without bf16), offloaded below 24 GB; on a machine without CUDA, the CPU in fp32 (slow but real)."""
    from zlt.spec.models import TINY_MODEL

    if base_model.get("name") == TINY_MODEL:
        return DevicePlan("cpu", "fp32", False)
    import torch

    if not torch.cuda.is_available():
        return DevicePlan("cpu", "fp32", False)
    dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if vram_gb is None:
        vram_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
    return DevicePlan("cuda", dtype, vram_gb < OFFLOAD_BELOW_GB)


def load_base_pipeline(base_model: dict[str, Any], plan: DevicePlan):
    """A ZImagePipeline of the base model, placed per `plan`. Never downloads when HF_HUB_OFFLINE is set."""
    from zlt.spec.models import TINY_MODEL

    if base_model.get("name") == TINY_MODEL:
        from zlt.trainer.tiny import build_tiny_pipeline

        return build_tiny_pipeline()
    from diffusers import ZImagePipeline

    from zlt.trainer.config import ModelConfig
    from zlt.trainer.models import _from_pretrained_kwargs, _load_error

    source = base_model.get("source") or "huggingface"
    model = ModelConfig(name=str(base_model["name"]), source=source if source != "builtin" else "huggingface",
                        weight_dtype=plan.dtype)
    try:
        pipe = ZImagePipeline.from_pretrained(model.name, **_from_pretrained_kwargs(model))
    except (OSError, ValueError) as e:
        raise _load_error(model, "pipeline", e) from e
    if plan.offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(plan.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def adapter_name(sha256: str) -> str:
    return "zlt_" + sha256[:16]


@dataclass
class _Entry:
    pipe: Any
    plan: DevicePlan
    adapters: OrderedDict[str, Path] = field(default_factory=OrderedDict)  # name -> file, least recently used first
    controlnets: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class CacheStats:
    loads: int = 0  # base pipelines loaded
    evictions: int = 0
    lora_loads: int = 0  # LoRA files loaded into a pipeline
    lora_reuses: int = 0  # LoRAs found already loaded

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


class PipelineCache:
    """At most `max_pipelines` base pipelines (least recently used dropped), each with up to `max_adapters` LoRAs
    loaded. `loader(base_model, plan)` builds a pipeline (tests count its calls)."""

    def __init__(self, max_pipelines: int = 1, max_adapters: int = 4,
                 loader: Callable[[dict[str, Any], DevicePlan], Any] | None = None) -> None:
        self.max_pipelines = max(1, max_pipelines)
        self.max_adapters = max(1, max_adapters)
        self.loader = loader or load_base_pipeline
        self.stats = CacheStats()
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._entries)

    def entry(self, base_model: dict[str, Any], plan: DevicePlan) -> _Entry:
        key = (str(base_model.get("name")), plan.device, plan.dtype, plan.offload)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            while len(self._entries) >= self.max_pipelines:
                _, old = self._entries.popitem(last=False)
                self.stats.evictions += 1
                _release(old)
            entry = _Entry(pipe=self.loader(base_model, plan), plan=plan)
            self.stats.loads += 1
            self._entries[key] = entry
            return entry

    def clear(self) -> None:
        """Drop every loaded pipeline (before a training job takes the GPU)."""
        with self._lock:
            while self._entries:
                _, old = self._entries.popitem(last=False)
                self.stats.evictions += 1
                _release(old)

    def activate(self, entry: _Entry, loras: list[Any]) -> list[str]:
        """Make exactly `loras` active at their scales (loading those not loaded yet); returns adapter names."""
        pipe = entry.pipe
        names = []
        for lora in loras:
            name = adapter_name(lora.sha256)
            if name in entry.adapters:
                entry.adapters.move_to_end(name)
                self.stats.lora_reuses += 1
            else:
                self._evict_adapters(entry, keep={adapter_name(x.sha256) for x in loras})
                try:
                    with warnings.catch_warnings():  # peft warns on every adapter after the first: that is the point
                        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                        pipe.load_lora_weights(str(lora.file), adapter_name=name)
                except (ValueError, KeyError, RuntimeError) as e:
                    raise BadInputError(f"generate.loras: {lora.file} does not fit the base model "
                                        f"{lora.artifact.base_name}: {e}",
                                        hint="use a LoRA trained on this base model") from None
                entry.adapters[name] = lora.file
                self.stats.lora_loads += 1
            names.append(name)
        if entry.adapters:
            # Inactive adapters get weight 0 rather than being unloaded: switching back costs nothing.
            all_names = list(entry.adapters)
            weights = [next((x.scale for x, n in zip(loras, names, strict=True) if n == a), 0.0) for a in all_names]
            pipe.set_adapters(all_names, adapter_weights=weights)
        return names

    def _evict_adapters(self, entry: _Entry, keep: set[str]) -> None:
        while len(entry.adapters) >= self.max_adapters:
            victim = next((n for n in entry.adapters if n not in keep), None)
            if victim is None:
                return
            entry.pipe.delete_adapters(victim)
            del entry.adapters[victim]

    def img2img(self, entry: _Entry):
        from diffusers import ZImageImg2ImgPipeline

        pipe = ZImageImg2ImgPipeline(**entry.pipe.components)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def controlnet(self, entry: _Entry, ref: str):
        """ZImageControlNetPipeline over the loaded components with the ControlNet at `ref` (loaded once)."""
        from diffusers import ZImageControlNetPipeline

        if ref not in entry.controlnets:
            entry.controlnets[ref] = load_controlnet(ref, entry.plan)
        pipe = ZImageControlNetPipeline(controlnet=entry.controlnets[ref], **entry.pipe.components)
        pipe.set_progress_bar_config(disable=True)
        return pipe


def load_controlnet(ref: str, plan: DevicePlan):
    """A Z-Image ControlNet from a local folder or .safetensors file, or a hub id already cached; never downloads."""
    import torch
    from diffusers import ZImageControlNetModel

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[plan.dtype]
    path = Path(ref).expanduser()
    try:
        if path.is_file():
            model = ZImageControlNetModel.from_single_file(str(path), torch_dtype=dtype)
        elif path.is_dir():
            model = ZImageControlNetModel.from_pretrained(str(path), torch_dtype=dtype)
        else:
            model = ZImageControlNetModel.from_pretrained(ref, torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        raise EnvNotReadyError(
            f"transfer.controlnet: cannot load the Z-Image ControlNet {ref!r} ({e})",
            hint="give a local folder or .safetensors file of a Z-Image ControlNet, or download it first "
            f"(hf download {ref}); zlt never downloads one while generating",
        ) from None
    return model.to(plan.device) if not plan.offload else model


def _release(entry: _Entry) -> None:
    entry.pipe = None
    entry.controlnets.clear()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


_DEFAULT: PipelineCache | None = None


def default_cache() -> PipelineCache:
    """The process-wide cache (the worker's and the CLI's)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PipelineCache()
    return _DEFAULT
