"""Which worker can take which job: GPU count and memory, and files a host must see. Pure functions.

A worker advertises each GPU's memory (NVML). A job's `resources.min_vram_gb` limits it to GPUs that
big; `resources.gpu: 2` to a worker with two such GPUs (one host). Slots without a known size (no
NVIDIA driver: plain slots for CPU backends and tests) are not judged here; preflight still is.
A queued job that no live worker can ever take says why (`why_waiting`) instead of waiting silently.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def slots_for(slots: list[int], vram_gb: dict[int, float] | None, min_vram_gb: float | None) -> list[int]:
    """The slots whose GPU is big enough for the job (all of them when sizes are unknown)."""
    if not min_vram_gb or not vram_gb:
        return list(slots)
    return [s for s in slots if s not in vram_gb or vram_gb[s] + 1e-6 >= min_vram_gb]


def worker_vram(worker: dict[str, Any]) -> dict[int, float]:
    return {int(g["index"]): float(g["vram_gb"]) for g in worker.get("gpu_info") or [] if g.get("vram_gb")}


def worker_slots(worker: dict[str, Any]) -> list[int]:
    return [int(x) for x in str(worker.get("gpus") or "").split(",") if x.strip()]


def _gib(x: float) -> str:
    return f"{x:g}"


def why_waiting(row: Any, workers: list[dict[str, Any]], now: float | None = None) -> str | None:
    """For a queued job: why no live worker can take it now or ever; None when one can (or it is not queued)."""
    if row["state"] != "queued":
        return None
    now = time.time() if now is None else now
    if (row["not_before"] or 0) > now:
        return f"waiting: backing off after an infrastructure fault; eligible again in {row['not_before'] - now:.0f}s"
    if not workers:
        return "waiting: no live worker (start one with 'zlt worker', or 'zlt serve' keeps one running)"
    refused = {h for h in (row["refused_hosts"] or "").split("\n") if h}
    usable = [w for w in workers if w["host"] not in refused]
    if not usable:
        return (f"waiting: no live worker can see the job's files ({row['error_message'] or 'refused'}; "
                f"refused by {', '.join(sorted(refused))})")
    need, min_vram = row["gpus_needed"], row["min_vram_gb"]
    if need == 0:
        return None
    if any(len(slots_for(worker_slots(w), worker_vram(w), min_vram)) >= need for w in usable):
        return None
    if min_vram and any(len(worker_slots(w)) >= need for w in usable):
        if need == 1:
            return f"waiting: no worker has a GPU with >= {_gib(min_vram)} GiB"
        return f"waiting: no worker has {need} GPUs with >= {_gib(min_vram)} GiB on one host"
    return f"waiting: no worker has {need} GPUs on one host" + (f" with >= {_gib(min_vram)} GiB" if min_vram else "")


def unseen_paths(spec_json: str) -> list[str]:
    """Files the job reads that this host cannot see: the dataset folder and any local model file.

    Job folders and the registry live on shared roots; a dataset or model path must be visible on the
    worker's host too, or the job is refused here and left for a host that sees it.
    """
    try:
        spec = json.loads(spec_json or "{}")
    except ValueError:
        return []
    out = []
    ds = (spec.get("dataset") or {}).get("path")
    if ds and not Path(ds).is_dir():
        out.append(f"dataset path {ds}")
    base = (spec.get("model") or {}).get("base") or {}
    if base.get("source") == "local" and base.get("name") and not Path(base["name"]).exists():
        out.append(f"model path {base['name']}")
    for key in ("dit", "vae", "text_encoder"):
        if base.get(key) and not Path(base[key]).exists():
            out.append(f"model.base.{key} {base[key]}")
    adapter = base.get("training_adapter") or ""
    if adapter.startswith("/") and not Path(adapter).exists():
        out.append(f"training adapter {adapter}")
    return out
