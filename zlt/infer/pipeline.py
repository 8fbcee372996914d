"""Loaded Z-Image pipelines, kept between generations: a small LRU by base model, LoRAs swapped in place.

Loading the 6B base model takes tens of seconds; loading a LoRA into a loaded pipeline takes a fraction of one.
So a pipeline stays loaded (`PipelineCache`), each LoRA is loaded once under an adapter name derived from its
sha256, and a request only changes which adapters are active and at which scale (`set_adapters`). The img2img and
ControlNet pipelines are built from the same components (no second copy of any weight).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.constants import TINY_MODEL
from zlt.core.errors import BadInputError, EnvNotReadyError
from zlt.profiles import largest_profile_within
from zlt.trainer.config import ModelConfig
from zlt.trainer.models import _from_pretrained_kwargs, _load_error
from zlt.trainer.tiny import build_tiny_pipeline

OFFLOAD_BELOW_GB = 24.0


@dataclass(frozen=True)
class DevicePlan:
    device: str  # cpu | cuda:N
    dtype: str  # fp32 | bf16 | fp16: the compute dtype
    offload: bool  # enable_model_cpu_offload (GPUs below 24 GB)
    float8: bool = False  # transformer weights stored in float8, cast per layer to `dtype` for compute
    profile: str | None = None  # the hardware profile the plan follows

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype, "offload": self.offload, "float8": self.float8,
                "profile": self.profile}


def gpu_plan(vram_gb: float, bf16: bool = True, index: int = 0) -> DevicePlan:
    """Pure: the plan for a CUDA GPU of `vram_gb`, from the same hardware profiles training uses: the transformer is
    float8 where the profile quantises it for training (12-24 GB), and below 24 GB the pipeline is offloaded."""
    profile = largest_profile_within(vram_gb)
    float8 = profile.ai_toolkit.quantize if profile is not None else True
    return DevicePlan(f"cuda:{index}", "bf16" if bf16 else "fp16", vram_gb < OFFLOAD_BELOW_GB, float8,
                      profile.name if profile is not None else None)


def cuda_ordinal(gpus: list[int] | None) -> int | None:
    """torch's index of the first GPU a job was given: job slots are physical (nvidia-smi) indexes, and under
    CUDA_VISIBLE_DEVICES=2,3 physical GPU 3 is torch's cuda:1."""
    if not gpus:
        return None
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and all(v.isdigit() for v in visible):
        return visible.index(str(gpus[0])) if str(gpus[0]) in visible else 0
    return gpus[0]


def plan_device(base_model: dict[str, Any], vram_gb: float | None = None, gpu: int | None = None) -> DevicePlan:
    """Where and how the pipeline runs: the tiny model on the CPU in fp32; a real model on CUDA per `gpu_plan`;
    on a machine without CUDA, the CPU in bf16 (slow but real; found by bench/realsize.py). `gpu`: the CUDA device index (a worker's slot)."""
    if base_model.get("name") == TINY_MODEL:
        return DevicePlan("cpu", "fp32", False, profile="cpu")
    import torch

    if not torch.cuda.is_available():  # bf16: in fp32 the real-size pipeline would need 41 GB of host memory
        return DevicePlan("cpu", "bf16", False, profile="cpu")
    index = gpu or 0
    if vram_gb is None:
        vram_gb = torch.cuda.get_device_properties(index).total_memory / 2**30
    return gpu_plan(vram_gb, torch.cuda.is_bf16_supported(), index)


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def apply_float8(pipe, plan: DevicePlan) -> None:
    """Store the transformer's weights in float8 (diffusers layerwise casting; norms and embeddings stay as they are)."""
    import torch

    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=_torch_dtype(plan.dtype))


def upcast_lora(pipe, plan: DevicePlan) -> None:
    """peft creates LoRA layers in the base layer's dtype; in float8 they could not compute: keep them in `dtype`."""
    import torch

    for name, p in pipe.transformer.named_parameters():
        if "lora_" in name and p.dtype == torch.float8_e4m3fn:
            p.data = p.data.to(_torch_dtype(plan.dtype))


def load_base_pipeline(base_model: dict[str, Any], plan: DevicePlan, text_encoder: bool = True):
    """A ZImagePipeline of the base model, placed per `plan`. Never downloads when HF_HUB_OFFLINE is set.
    `text_encoder=False`: without it (the prompts come encoded, zlt.infer.textenc); the tokenizer stays."""
    if base_model.get("name") == TINY_MODEL:
        return build_tiny_pipeline()
    from diffusers import ZImagePipeline

    source = base_model.get("source") or "huggingface"
    model = ModelConfig(name=str(base_model["name"]), source=source if source != "builtin" else "huggingface",
                        weight_dtype=plan.dtype)
    try:
        skip = {} if text_encoder else {"text_encoder": None}
        pipe = ZImagePipeline.from_pretrained(model.name, **skip, **_from_pretrained_kwargs(model))
    except (OSError, ValueError) as e:
        raise _load_error(model, "pipeline", e) from e
    if plan.offload:
        pipe.enable_model_cpu_offload(gpu_id=int(plan.device.partition(":")[2] or 0))
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
    """Base pipelines kept loaded, at most `max_pipelines` per device (least recently used dropped first), each with
    up to `max_adapters` LoRAs loaded. `loader(base_model, plan)` builds a pipeline (tests count its calls);
    `text_encoder=False` (a pipeline without it, its own entry) reaches the loader as that keyword.

    Thread-safe: `use()` hands out a pipeline under its own lock, and a pipeline in use is never dropped mid-run
    (the eviction waits for it).
    """

    def __init__(self, max_pipelines: int = 1, max_adapters: int = 4,
                 loader: Callable[..., Any] | None = None) -> None:
        self.max_pipelines = max(1, max_pipelines)
        self.max_adapters = max(1, max_adapters)
        self.loader = loader or load_base_pipeline
        self.stats = CacheStats()
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(base_model: dict[str, Any], plan: DevicePlan, text_encoder: bool = True) -> tuple:
        return (str(base_model.get("name")), plan.device, plan.dtype, plan.offload, plan.float8, text_encoder)

    def loaded(self, base_model: dict[str, Any], plan: DevicePlan, text_encoder: bool = True) -> bool:
        """Is this pipeline loaded already (so `use` returns at once)?"""
        with self._lock:
            return self._key(base_model, plan, text_encoder) in self._entries

    def entry(self, base_model: dict[str, Any], plan: DevicePlan, text_encoder: bool = True) -> _Entry:
        """The loaded pipeline for `base_model` under `plan`, loading it (and dropping the least recently used one
        on the same device when the device is full). Callers that run it hold `entry.lock` (see `use`)."""
        key = self._key(base_model, plan, text_encoder)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            same_device = [k for k in self._entries if k[1] == plan.device]
            while len(same_device) >= self.max_pipelines:
                self._drop(same_device.pop(0))
            pipe = self.loader(base_model, plan, **({} if text_encoder else {"text_encoder": False}))
            if plan.float8:
                apply_float8(pipe, plan)
            entry = _Entry(pipe=pipe, plan=plan)
            self.stats.loads += 1
            self._entries[key] = entry
            return entry

    @contextmanager
    def use(self, base_model: dict[str, Any], plan: DevicePlan, text_encoder: bool = True) -> Iterator[_Entry]:
        """The entry, locked for the caller's run; retried if it was dropped between lookup and lock."""
        while True:
            entry = self.entry(base_model, plan, text_encoder)
            with entry.lock:
                if entry.pipe is not None:
                    yield entry
                    return

    def _drop(self, key: tuple) -> None:
        old = self._entries.pop(key)
        self.stats.evictions += 1
        with old.lock:  # a run in progress on it finishes first
            _release(old)

    def clear(self) -> None:
        """Drop every loaded pipeline (before a training job takes the GPU)."""
        with self._lock:
            for key in list(self._entries):
                self._drop(key)

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
                if entry.plan.float8:
                    upcast_lora(pipe, entry.plan)
                entry.adapters[name] = lora.file
                self.stats.lora_loads += 1
            names.append(name)
        # Only these adapters run; the others stay loaded but inactive, so switching back costs no reload.
        pipe.set_adapters(names, adapter_weights=[x.scale for x in loras])
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
    from diffusers import ZImageControlNetModel

    dtype = _torch_dtype(plan.dtype)
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix.lower() != ".safetensors":
        raise BadInputError(f"transfer.controlnet: {path} is not a .safetensors file",
                            hint="zlt loads weights only from .safetensors (pickle files can run code when loaded)")
    try:
        # safetensors only: a pickle checkpoint can run code when loaded
        if path.is_file():
            model = ZImageControlNetModel.from_single_file(str(path), torch_dtype=dtype)
        elif path.is_dir():
            model = ZImageControlNetModel.from_pretrained(str(path), torch_dtype=dtype, use_safetensors=True)
        else:
            model = ZImageControlNetModel.from_pretrained(ref, torch_dtype=dtype, local_files_only=True,
                                                          use_safetensors=True)
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
