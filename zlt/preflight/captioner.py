"""The captioner's part of a preflight (`dataset.caption.auto`, `zlt dataset caption`, a caption job):

- the model is on this machine (the tiny one is built in; a local folder holds config.json and .safetensors; a hub
  id is in the Hugging Face cache): zlt never downloads a captioner mid-job, so a missing one fails fast with the
  command that downloads it;
- its GPU memory: captioning runs *before* training, never beside it, so the job's peak is the larger of the two
  (the estimate gets a `captioning` phase; its total is the max, not the sum);
- the disk and the folder: sidecars and captions.jsonl are written into the dataset folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from zlt.caption.models import CaptionerInfo, captioner_info
from zlt.core.errors import BadInputError, EnvNotReadyError
from zlt.dataset.scan import scan_dataset
from zlt.preflight.models import hf_cache_dir, hub_cli, hub_offline
from zlt.preflight.report import Check
from zlt.spec.models import JobSpec

SIDECAR_BYTES = 4096  # one sidecar (a block) plus its record, generously
MiB = 1 << 20


def _cached_snapshot(repo_id: str) -> Path | None:
    folder = hf_cache_dir() / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    if not folder.is_dir():
        return None
    for snap in sorted(folder.iterdir(), key=lambda p: -p.stat().st_mtime):
        if (snap / "config.json").is_file() and any(snap.glob("*.safetensors")):
            return snap
    return None


def download_command(name: str) -> str:
    return f"{hub_cli()} download {name}"


def presence_check(name: str, field: str = "dataset.caption.auto.model") -> Check:
    """Whether the captioner can be loaded offline on this machine (never downloaded here)."""
    try:
        info = captioner_info(name, field)
    except BadInputError as e:
        return Check("captioner", "fail", e.message, e.hint)
    if info.is_tiny:
        return Check("captioner", "pass", f"{name}: built in (tiny random model, no download)",
                     details=info.to_dict())
    local = Path(info.name).expanduser()
    if local.is_absolute() or local.exists():
        ok = (local / "config.json").is_file() and any(local.glob("*.safetensors"))
        return Check("captioner", "pass" if ok else "fail",
                     f"{name}: local folder" + ("" if ok else " without config.json and .safetensors weights"),
                     "" if ok else "name a folder written by save_pretrained (safetensors), or a hub id",
                     details=info.to_dict())
    snap = _cached_snapshot(info.name)
    if snap is not None:
        return Check("captioner", "pass", f"{name}: in the HF cache ({snap})", details=info.to_dict())
    offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
    return Check("captioner", "fail", f"{name}: not downloaded{offline}; zlt never downloads a captioner mid-job",
                 f"{download_command(info.name)}  (~{info.download_gb:g} GB)", details=info.to_dict())


def require_captioner(name: str, field: str = "caption.model") -> CaptionerInfo:
    """The captioner's info, or fail fast: BadInputError for an unknown name (exit 2), EnvNotReadyError with the
    download command for one that is not on this machine (exit 3)."""
    info = captioner_info(name, field)
    check = presence_check(name, field)
    if not check.ok:
        raise EnvNotReadyError(f"{field}: {check.message}", hint=check.fix)
    return info


def vram_check(info: CaptionerInfo, report: Any) -> Check:
    """The captioner's memory against the budget; the estimate's peak becomes max(training, captioning)."""
    est = getattr(report, "estimate", None)
    need = info.vram_gb
    if est is not None:
        est.phases["captioning"] = need
        if need > est.total_gb:
            est.total_gb = need
            est.notes.append(f"the captioner {info.name} ({need:g} GiB) sets the peak: it runs before training")
    budget = getattr(report, "budget_gb", None)
    if info.is_tiny or budget is None:
        return Check("captioner_vram", "pass", f"captioner {info.name}: ~{need:g} GiB, before training (not beside "
                     "it)", details={"vram_gb": need})
    if need <= budget:
        return Check("captioner_vram", "pass", f"captioner {info.name}: ~{need:g} GiB of {budget:.1f} GiB free, "
                     "before training (not beside it)", details={"vram_gb": need, "budget_gb": round(budget, 2)})
    return Check("captioner_vram", "fail", f"captioner {info.name} needs ~{need:g} GiB, {budget:.1f} GiB free",
                 "use a smaller captioner: dataset.caption.auto.model=florence-community/Florence-2-base",
                 details={"vram_gb": need, "budget_gb": round(budget, 2)})


def disk_check(folder: Path, images: int) -> Check:
    """Room and permission to write the sidecars and captions.jsonl into the dataset folder."""
    need = images * SIDECAR_BYTES + MiB
    if not folder.is_dir():
        return Check("captioner_disk", "pass", f"{folder} not there yet: checked with the dataset")
    if not os.access(folder, os.W_OK):
        return Check("captioner_disk", "fail", f"cannot write captions into {folder} (read-only)",
                     "make the folder writable, or caption a copy of it")
    free = shutil.disk_usage(folder).free
    if free < need:
        return Check("captioner_disk", "fail", f"{free // MiB} MiB free in {folder}, captions need {need // MiB} MiB",
                     "free some disk space")
    return Check("captioner_disk", "pass", f"{free // MiB} MiB free for ~{images} caption(s) in {folder}")


def captioner_checks(spec: JobSpec, profile: Any, report: Any) -> list[Check]:
    """The checks of `dataset.caption.auto` (none when it is off): presence, memory, disk."""
    auto = spec.dataset.caption.auto
    if not auto.enable:
        return []
    out = [presence_check(auto.model)]
    try:
        info = captioner_info(auto.model, "dataset.caption.auto.model")
    except BadInputError:
        return out
    out.append(vram_check(info, report))
    folder = Path(spec.dataset.path)
    images = len(scan_dataset(folder).images) if folder.is_dir() else 0
    out.append(disk_check(folder, images))
    return out
