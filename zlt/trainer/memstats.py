"""The trainer's own memory figures, written to `<output>/memory.json` at the end of a run.

At each mark: the process's resident memory now and its peak so far (Linux `/proc/self/status` VmRSS/VmHWM; the
kernel's high-water mark, so no peak is missed between marks; RssAnon/RssFile split it into memory the process
allocated and memory-mapped weight files), and on CUDA the allocator's allocated/reserved
bytes now and at their peak. Peaks are monotonic, so the peak at the `cached` mark is the peak of the caching
pass (VAE + text encoder) and the last one the peak of the whole run. `tensor_bytes` counts the transformer's
parameters and buffers by dtype (float8 storage shows here) and the trainable LoRA. bench/realsize.py reads it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def _proc_status() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:  # not Linux: fall back to the peak that getrusage keeps
        import resource

        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def module_bytes(module) -> dict[str, int]:
    """Bytes of a module's parameters and buffers by dtype (e.g. {'torch.bfloat16': ..., 'torch.float8_e4m3fn': ...})."""
    out: dict[str, int] = {}
    seen: set[int] = set()
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        key = str(t.dtype)
        out[key] = out.get(key, 0) + t.numel() * t.element_size()
    return out


def return_freed_memory() -> None:
    """glibc keeps freed heap memory (the float8 text encoder's 3.7 GiB at real size) for reuse; hand it back to the
    system so the resident figure after caching is the truth. glibc only; elsewhere nothing happens."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryLog:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.marks: list[dict[str, Any]] = []
        self.tensor_bytes: dict[str, Any] = {}

    def mark(self, label: str) -> None:
        st = _proc_status()
        row: dict[str, Any] = {"mark": label, "t": round(time.monotonic() - self.t0, 2),
                               "rss_bytes": st.get("VmRSS"), "peak_rss_bytes": st.get("VmHWM"),
                               # anonymous (tensors made here) vs file-backed (memory-mapped safetensors weights)
                               "rss_anon_bytes": st.get("RssAnon"), "rss_file_bytes": st.get("RssFile")}
        try:
            import torch

            if torch.cuda.is_available() and torch.cuda.is_initialized():
                row.update(cuda_allocated_bytes=torch.cuda.memory_allocated(),
                           cuda_peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                           cuda_peak_reserved_bytes=torch.cuda.max_memory_reserved())
        except ImportError:
            pass
        self.marks.append(row)

    def write(self, folder: Path) -> Path:
        path = Path(folder) / "memory.json"
        path.write_text(json.dumps({"marks": self.marks, "tensor_bytes": self.tensor_bytes}, indent=2))
        return path
