"""Line checks every backend shares: CUDA OOM messages, warnings, argparse errors, step numbers in names.

All functions are pure: a line (or a name) in, a value out.
"""

from __future__ import annotations

import re

from zlt.core.events import Error, Event, Oom, Warning_

CUDA_OOM_MARKERS = (
    "CUDA out of memory",
    "OutOfMemoryError",
    "CUDA error: out of memory",
    "HIP out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
)
TRACEBACK_START = "Traceback (most recent call last):"

_PY_WARNING = re.compile(r"^\S.*?:\d+: ([A-Z]\w*Warning): (.+)$")
_LOG_WARNING = re.compile(r"^(?:\S+\s+\S+\s+)?WARNING(?::[\w.]+:|\s*[:\-]?\s+)(.+)$")
_ARGPARSE_ERROR = re.compile(r"^[\w.\-]+(?:\.py)?: error: (.+)$")
_STEP_9 = re.compile(r"_(\d{9})\.safetensors$")
_STEP_8 = re.compile(r"-step(\d{8})(?:-state)?(?:\.safetensors)?$")


def is_cuda_oom(line: str) -> bool:
    return any(m in line for m in CUDA_OOM_MARKERS)


def step_from_name(name: str) -> int | None:
    """`zstyle_000000250.safetensors` (ai-toolkit, built-in) or `zstyle-step00000250.safetensors` (musubi)."""
    m = _STEP_9.search(name) or _STEP_8.search(name)
    return int(m.group(1)) if m else None


def parse_generic(line: str) -> Event | None:
    """Checks for lines no backend-specific rule claimed: fatal OOM, warnings, argparse errors."""
    s = line.strip()
    if not s:
        return None
    if is_cuda_oom(s):
        return Oom(fatal=True, message=s)
    if "Warning" in s or "WARNING" in s:
        m = _PY_WARNING.match(s)
        if m:
            return Warning_(message=f"{m.group(1)}: {m.group(2)}")
        m = _LOG_WARNING.match(s)
        if m:
            return Warning_(message=m.group(1).strip())
    if ": error: " in s:
        m = _ARGPARSE_ERROR.match(s)
        if m:
            return Error(message=s)
    return None
