"""The host around the GPU: free RAM for loading the model, free disk for checkpoints, caches and the artifact
registry, and CPU cores. Disk usage comes through an injectable `usage(path)` (shutil.disk_usage by default),
so a full disk can be described without filling one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from zlt import backends
from zlt.preflight.report import Status
from zlt.preflight.vram import lora_param_count
from zlt.profiles import HardwareProfile
from zlt.spec.models import JobSpec

GIB = float(1 << 30)
RUNTIME_RAM_GB = 4.0  # Python, torch, CUDA libraries and the data loader
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_CAPTION_TOKENS, _CAPTION_DIM = 128, 2560  # cached Qwen3 hidden states per caption, bf16
_DISK_SLACK_GB = 5.0  # below need + slack: warn, the filesystem is nearly full


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


UsageFn = Callable[[Path], DiskUsage]


@dataclass
class DiskNeed:
    """What one job writes to one filesystem, and what is free there."""

    paths: list[str]
    need_gb: float
    free_gb: float
    items: dict[str, float] = field(default_factory=dict)  # what makes up `need_gb`

    @property
    def status(self) -> Status:
        if self.free_gb < self.need_gb:
            return "fail"
        return "warn" if self.free_gb < self.need_gb + _DISK_SLACK_GB else "pass"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def _existing(path: Path) -> Path:
    """The nearest existing ancestor: a folder the job will create is measured on its parent's filesystem."""
    p = path.expanduser().absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def _usage(path: Path) -> DiskUsage:
    u = shutil.disk_usage(path)
    return DiskUsage(u.total, u.used, u.free)


def dataset_stats(path: Path) -> tuple[int, float]:
    """(images, GiB) in the dataset folder, by extension; hidden folders skipped. (0, 0) when missing."""
    n, size = 0, 0
    if not path.is_dir():
        return 0, 0.0
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.lower().endswith(_IMAGE_EXTS):
                n += 1
                try:
                    size += os.stat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue
    return n, size / GIB


def lora_file_gb(spec: JobSpec, backend: str) -> float:
    per = {"bf16": 2, "fp16": 2, "fp32": 4}[spec.output.save.dtype]
    return lora_param_count(spec, backend) * per / GIB


def disk_needs(spec: JobSpec, backend: str, profile: HardwareProfile, home: Path, *, registry: Path,
               hf_cache: Path | None = None, download_gb: float = 0.0, usage: UsageFn = _usage) -> list[DiskNeed]:
    """Disk each filesystem must have free: checkpoints x rank x keep count, optimizer state, the prepared
    dataset and its latent / text caches (under ZLT_HOME), the artifact (registry) and model downloads."""
    n_images, data_gb = dataset_stats(Path(spec.dataset.path))
    lora = 0.001 if spec.is_tiny else lora_file_gb(spec, backend)  # the tiny model's LoRA is kilobytes
    keep = spec.output.save.keep + 1  # intermediate checkpoints kept, plus the final one
    res = min(spec.dataset.resolution, profile.resolution_cap)
    buckets = [r for r in (512, 768, 1024, 1280, 1536, 2048) if r <= res] or [res]
    latent = sum(16 * (r // 8) ** 2 * 2 for r in buckets) / GIB  # bf16 latents per bucket
    text = _CAPTION_TOKENS * _CAPTION_DIM * 2 / GIB
    job_items = {
        "checkpoints": lora * keep,
        "optimizer_state": lora * 4,  # optimizer.pt / musubi state: moments at fp32 of a bf16 file's params
        "prepared_dataset": data_gb * (2 if spec.dataset.augment.horizontal_flip else 1),
        "latent_and_text_caches": n_images * (latent + text),
    }
    registry_items = {"artifact": lora * keep + 0.01}
    places: list[tuple[Path, dict[str, float]]] = [(home, job_items), (registry, registry_items)]
    if hf_cache is not None and download_gb > 0:
        places.append((hf_cache, {"model_download": download_gb}))
    by_fs: dict[int, DiskNeed] = {}
    for path, items in places:
        anchor = _existing(path)
        try:
            dev = anchor.stat().st_dev
        except OSError:
            dev = hash(str(anchor))
        need = by_fs.get(dev)
        if need is None:
            u = usage(anchor)
            need = by_fs[dev] = DiskNeed([], 0.0, u.free / GIB)
        need.paths.append(str(path))
        for k, v in items.items():
            need.items[k] = need.items.get(k, 0.0) + v
        need.need_gb += sum(items.values())
    return list(by_fs.values())


@dataclass
class RamNeed:
    available_gb: float
    total_gb: float
    need_gb: float  # comfortable: no swapping while loading
    minimum_gb: float  # below this the largest component cannot be loaded at all

    @property
    def status(self) -> Status:
        if self.available_gb < self.minimum_gb:
            return "fail"
        return "warn" if self.available_gb < self.need_gb else "pass"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def ram_need_gb(spec: JobSpec, profile: HardwareProfile, backend: str) -> tuple[float, float]:
    """(comfortable, minimum) host RAM in GiB. Checkpoints are read into host memory before they move to the
    GPU, one model at a time; block swap parks blocks there for the whole run."""
    if spec.is_tiny:
        return 1.0, 0.5
    c = profile.estimator
    bf16 = 2.0 if spec.model.base.precision != "fp32" else 4.0
    transformer = c.transformer_params_b * 1e9 * bf16 / GIB
    text_encoder = c.text_encoder_params_b * 1e9 * bf16 / GIB
    parked, text_encoder = backends.get(backend).host_ram(profile, transformer, text_encoder)
    minimum = max(transformer, text_encoder) + RUNTIME_RAM_GB / 2
    return transformer + text_encoder + parked + RUNTIME_RAM_GB, minimum


def ram_check(spec: JobSpec, profile: HardwareProfile, backend: str, *, memory: Any = None) -> RamNeed:
    """`memory` is a psutil.virtual_memory()-like object (tests describe a small host with one)."""
    if memory is None:
        import psutil

        memory = psutil.virtual_memory()
    need, minimum = ram_need_gb(spec, profile, backend)
    return RamNeed(memory.available / GIB, memory.total / GIB, need, minimum)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1
