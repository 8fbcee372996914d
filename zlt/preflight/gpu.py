"""GPUs as NVML sees them, behind one small interface.

`GpuProbe.devices()` is the only thing the rest of zlt asks of a GPU library. `NvmlProbe` asks NVML
(`nvidia-ml-py`, imported inside its methods so `zlt --help` never loads it); `StaticProbe` answers from a
fixed device list: `--assume-gpu "RTX 4090:24"` plans for a card that is not here, and tests use it for
machines they do not have.

Memory is in GiB (2**30 bytes) throughout zlt: that is what a card's label means (a "24 GB" RTX 4090
reports 24564 MiB).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from zlt.core.errors import BadInputError

GIB = float(1 << 30)

# Cards without bf16 (compute capability below 8.0), matched by name when a GPU is only assumed.
_PRE_AMPERE = re.compile(r"\b(V100|T4|P100|P40|P4|K80|M60|GTX|RTX ?20\d\d|TITAN (V|RTX|XP?))\b", re.IGNORECASE)


class GpuUnavailable(Exception):
    """NVML cannot be used here: not installed, no driver, or no device. `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class GpuInfo:
    """One GPU. `index` is NVML's (nvidia-smi's) index, which is what CUDA_VISIBLE_DEVICES names."""

    index: int
    name: str
    total_gb: float
    free_gb: float
    compute_capability: tuple[int, int] | None
    processes: list[dict] = field(default_factory=list)  # {"pid", "name", "used_gb"}
    bf16: bool = True
    uuid: str | None = None
    assumed: bool = False  # from --assume-gpu / --vram-gb, not a device on this machine

    @property
    def used_by_others_gb(self) -> float:
        return sum(float(p.get("used_gb") or 0.0) for p in self.processes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compute_capability"] = ".".join(map(str, self.compute_capability)) if self.compute_capability else None
        d["total_gb"] = round(self.total_gb, 2)
        d["free_gb"] = round(self.free_gb, 2)
        return d


class GpuProbe(Protocol):
    def devices(self) -> list[GpuInfo]:
        """Every device on the machine, in NVML order; raises GpuUnavailable without NVML."""
        ...


@dataclass
class StaticProbe:
    """A fixed device list (an assumed target machine, or a machine a test describes).

    `unavailable` makes it behave like a machine without NVML: `devices()` raises with that reason.
    """

    gpus: list[GpuInfo] = field(default_factory=list)
    unavailable: str | None = None
    driver: str | None = None

    def devices(self) -> list[GpuInfo]:
        if self.unavailable:
            raise GpuUnavailable(self.unavailable)
        return [GpuInfo(**{**asdict(g), "processes": [dict(p) for p in g.processes]}) for g in self.gpus]

    def driver_version(self) -> str | None:
        return self.driver


class NvmlProbe:
    """The real thing: NVML through nvidia-ml-py (`pip install 'zlt[gpu]'`)."""

    def _nvml(self) -> Any:
        try:
            import pynvml
        except ImportError:
            raise GpuUnavailable("nvidia-ml-py is not installed (pip install 'zlt[gpu]')") from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise GpuUnavailable(f"NVML cannot start: {_nvml_text(e)} (is the NVIDIA driver installed?)") from None
        return pynvml

    def devices(self) -> list[GpuInfo]:
        nvml = self._nvml()
        try:
            count = nvml.nvmlDeviceGetCount()
            return [self._device(nvml, i) for i in range(count)]
        except nvml.NVMLError as e:
            raise GpuUnavailable(f"NVML failed while listing devices: {_nvml_text(e)}") from None
        finally:
            _shutdown(nvml)

    def driver_version(self) -> str | None:
        try:
            nvml = self._nvml()
        except GpuUnavailable:
            return None
        try:
            return _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            return None
        finally:
            _shutdown(nvml)

    def cuda_driver_version(self) -> str | None:
        """The CUDA version the driver supports, e.g. '12.8'."""
        try:
            nvml = self._nvml()
        except GpuUnavailable:
            return None
        try:
            v = int(nvml.nvmlSystemGetCudaDriverVersion_v2())
            return f"{v // 1000}.{(v % 1000) // 10}"
        except (nvml.NVMLError, AttributeError, TypeError, ValueError):
            return None
        finally:
            _shutdown(nvml)

    @staticmethod
    def _device(nvml: Any, i: int) -> GpuInfo:
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        mem = nvml.nvmlDeviceGetMemoryInfo(h)
        try:
            cc: tuple[int, int] | None = tuple(nvml.nvmlDeviceGetCudaComputeCapability(h))  # type: ignore[assignment]
        except nvml.NVMLError:
            cc = None
        try:
            uuid = _text(nvml.nvmlDeviceGetUUID(h))
        except nvml.NVMLError:
            uuid = None
        return GpuInfo(
            index=i,
            name=_text(nvml.nvmlDeviceGetName(h)),
            total_gb=mem.total / GIB,
            free_gb=mem.free / GIB,
            compute_capability=cc,
            processes=_processes(nvml, h),
            bf16=bool(cc and cc[0] >= 8),
            uuid=uuid,
        )


def _processes(nvml: Any, handle: Any) -> list[dict]:
    out: dict[int, dict] = {}
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            procs = getattr(nvml, getter)(handle)
        except (nvml.NVMLError, AttributeError):
            continue
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            out.setdefault(int(p.pid), {"pid": int(p.pid), "name": _process_name(int(p.pid)),
                                        "used_gb": round(used / GIB, 2) if isinstance(used, int) else None})
    return list(out.values())


def _process_name(pid: int) -> str | None:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # gone, or another user's process in a container: the pid is still worth showing
        return None


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _nvml_text(e: Exception) -> str:
    return str(e) or type(e).__name__


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


@dataclass
class GpuScan:
    """What `scan_gpus` found: the visible devices, or why there are none."""

    devices: list[GpuInfo]
    reason: str | None = None  # why `devices` is empty
    visible: str | None = None  # CUDA_VISIBLE_DEVICES as read
    hidden: int = 0  # devices NVML sees that CUDA_VISIBLE_DEVICES hides
    unknown_ids: list[str] = field(default_factory=list)  # ids in CUDA_VISIBLE_DEVICES that match no device


_UNSET = object()


def scan_gpus(probe: GpuProbe | None = None, visible: Any = _UNSET) -> GpuScan:
    """Visible GPUs in CUDA's order, or the reason there are none. Never raises."""
    if visible is _UNSET:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    probe = probe or NvmlProbe()
    try:
        all_devices = probe.devices()
    except GpuUnavailable as e:
        return GpuScan([], e.reason, visible)
    if not all_devices:
        return GpuScan([], "NVML works but reports no GPU", visible)
    if visible is None:
        return GpuScan(all_devices, None, None)
    chosen, unknown = _apply_visible(all_devices, str(visible))
    reason = None
    if not chosen:
        reason = f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    return GpuScan(chosen, reason, str(visible), len(all_devices) - len(chosen), unknown)


def detect_gpus(probe: GpuProbe | None = None, visible: Any = _UNSET) -> list[GpuInfo]:
    """The GPUs a trainer started now would see; [] without NVML, driver or GPU (never raises).

    `visible` defaults to $CUDA_VISIBLE_DEVICES: indexes or GPU UUIDs (prefixes allowed), comma separated,
    in the order CUDA will number them; the list stops at the first invalid entry, as CUDA's does.
    """
    return scan_gpus(probe, visible).devices


def _apply_visible(devices: list[GpuInfo], visible: str) -> tuple[list[GpuInfo], list[str]]:
    text = visible.strip()
    if text == "":
        return [], []
    chosen: list[GpuInfo] = []
    unknown: list[str] = []
    for raw in text.split(","):
        token = raw.strip()
        found = _match(devices, token)
        if found is None:
            unknown.append(token)
            break  # CUDA ignores everything after the first id it cannot resolve
        if found not in chosen:
            chosen.append(found)
    return chosen, unknown


def _match(devices: list[GpuInfo], token: str) -> GpuInfo | None:
    if re.fullmatch(r"\d+", token):
        return next((d for d in devices if d.index == int(token)), None)
    if token.upper().startswith(("GPU-", "MIG-")):
        hits = [d for d in devices if d.uuid and d.uuid.upper().startswith(token.upper())]
        return hits[0] if len(hits) == 1 else None
    return None


def parse_assume_gpu(text: str) -> GpuInfo:
    """`"RTX 4090:24"` (name, memory in GB) or `"V100:32:7.0"` (and compute capability) -> an assumed GpuInfo."""
    parts = [p.strip() for p in str(text).split(":")]
    hint = 'write NAME:VRAM_GB, e.g. --assume-gpu "RTX 4090:24" (optionally :CC, e.g. "V100:32:7.0")'
    if len(parts) not in (2, 3) or not parts[0]:
        raise BadInputError(f"--assume-gpu {text!r}: expected NAME:VRAM_GB", hint=hint)
    name = parts[0]
    try:
        vram = float(parts[1])
    except ValueError:
        raise BadInputError(f"--assume-gpu {text!r}: {parts[1]!r} is not a number of GB", hint=hint) from None
    if not 1 <= vram <= 1024:
        raise BadInputError(f"--assume-gpu {text!r}: {vram:g} GB is outside 1..1024", hint=hint)
    cc: tuple[int, int] | None = None
    if len(parts) == 3:
        m = re.fullmatch(r"(\d+)\.(\d+)", parts[2])
        if not m:
            raise BadInputError(f"--assume-gpu {text!r}: compute capability {parts[2]!r} is not like 8.9", hint=hint)
        cc = (int(m.group(1)), int(m.group(2)))
    bf16 = cc[0] >= 8 if cc else not _PRE_AMPERE.search(name)
    return GpuInfo(index=0, name=name, total_gb=vram, free_gb=vram, compute_capability=cc, processes=[], bf16=bf16,
                   assumed=True)
