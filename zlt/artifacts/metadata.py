"""The safetensors header every LoRA zlt writes: modelspec (sai_model_spec), kohya `ss_*`, ai-toolkit's
`training_info`, and `zlt.*` keys that tie the file to its job, spec and dataset. Values are strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from zlt import __version__
from zlt.spec.models import JobSpec

ARCHITECTURE = "Z-Image/lora"
SAI_MODEL_SPEC = "1.0.1"
BASE_MODEL_VERSION = "zimage"
# Keys of a source file that must not survive a rewrite: they describe bytes or a scale that no longer hold.
_DROP = ("lora_adapter_metadata", "format", "sshs_model_hash", "sshs_legacy_hash", "modelspec.hash_sha256")


@dataclass(frozen=True)
class LoraFacts:
    """What the header says about one weights file."""

    job_id: str
    step: int | None
    final: bool
    rank: int
    key_format: str
    spec_sha256: str
    dataset_sha256: str | None
    num_images: int | None
    date: float  # unix time
    backend: str
    epoch: int | None = None
    alpha: float | None = None  # the alpha the weights were trained with (the file's own; rank when it has none)
    precision: str | None = None  # what the trainer trained in (zlt.artifacts.trained), else the spec's
    target_modules: tuple[str, ...] = ()  # from the saved keys
    modules: int | None = None
    adapter: str | None = None  # the training adapter merged before training; None: none
    timestep: str | None = None  # JSON of the timestep scheme the trainer used
    captioner: str | None = None  # dataset.caption.auto: "MODEL@REVISION: N captions generated (PROMPT)"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def iso_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def source_epoch(metadata: dict[str, str]) -> int | None:
    """The epoch an ai-toolkit checkpoint recorded in `training_info`, if any."""
    try:
        info = json.loads(metadata.get("training_info", ""))
        epoch = info.get("epoch") if isinstance(info, dict) else None
        return int(epoch) if epoch is not None else None
    except (ValueError, TypeError):
        return None


def source_step(metadata: dict[str, str]) -> int | None:
    try:
        info = json.loads(metadata.get("training_info", ""))
        step = info.get("step") if isinstance(info, dict) else None
        return int(step) if step is not None else None
    except (ValueError, TypeError):
        return None


def build_lora_metadata(spec: JobSpec, facts: LoraFacts, source: dict[str, str] | None = None) -> dict[str, str]:
    """Header for one file. Source keys (ai-toolkit's `software`, musubi's `ss_seed`, ...) are kept unless zlt
    sets them or they describe bytes that changed. `modelspec.hash_sha256` is added by `with_data_hash`."""
    meta = {k: v for k, v in (source or {}).items() if k not in _DROP and not k.startswith("zlt.")}
    if facts.key_format != "kohya":
        meta.pop("ss_network_module", None)  # names musubi's network class, which only reads kohya keys
    res = spec.dataset.resolution
    title = spec.name if facts.final else f"{spec.name} step {facts.step}"
    tr = spec.training
    meta.update({
        "format": "pt",  # what safetensors.torch writes; some loaders check it
        "modelspec.sai_model_spec": SAI_MODEL_SPEC,
        "modelspec.architecture": ARCHITECTURE,
        "modelspec.implementation": "diffusers",
        "modelspec.title": title,
        "modelspec.trigger_phrase": spec.trigger or "",
        "modelspec.resolution": f"{res}x{res}",
        "modelspec.date": iso_date(facts.date),
        "modelspec.description": f"Z-Image LoRA '{spec.name}' ({spec.preset} preset) trained by zlt job {facts.job_id}",
        "modelspec.usage_hint": "ZImagePipeline.load_lora_weights(path); 9 steps, guidance_scale 0.0, lora scale 0.7-1.0",
        "ss_base_model_version": BASE_MODEL_VERSION,
        "ss_network_dim": str(facts.rank or spec.model.lora.rank),
        "ss_network_alpha": _num(facts.alpha if facts.alpha is not None else spec.model.lora.alpha),
        "ss_learning_rate": _num(tr.learning_rate),
        "ss_max_train_steps": str(tr.max_steps),
        "ss_num_train_images": str(facts.num_images) if facts.num_images is not None else "",
        "ss_lr_scheduler": tr.scheduler,
        "ss_optimizer": tr.optimizer.type + ("8bit" if tr.optimizer.use_8bit else ""),
        "ss_seed": str(tr.seed),
        "ss_mixed_precision": facts.precision or tr.mixed_precision,
        "ss_steps": "" if facts.step is None else str(facts.step),
        "ss_output_name": spec.name,
        "training_info": json.dumps({"step": facts.step, "epoch": facts.epoch}),
        "zlt.version": __version__,
        "zlt.job_id": facts.job_id,
        "zlt.spec_sha256": facts.spec_sha256,
        "zlt.dataset_sha256": facts.dataset_sha256 or "",
        "zlt.backend": facts.backend,
        "zlt.key_format": facts.key_format,
        "zlt.step": "" if facts.step is None else str(facts.step),
        "zlt.final": "true" if facts.final else "false",
    })
    if facts.captioner:
        meta["zlt.captioner"] = facts.captioner
    if facts.target_modules:  # what was trained, read back from the file's own keys
        meta["zlt.target_modules"] = ",".join(facts.target_modules)
        meta["zlt.lora_modules"] = str(facts.modules)
        meta["zlt.training_adapter"] = facts.adapter or "none"
        if facts.timestep:
            meta["zlt.timestep"] = facts.timestep
    return meta


def with_data_hash(meta: dict[str, str], data_sha256: str) -> dict[str, str]:
    """Record the hash of the tensor data (independent of the header, so it can live in the header)."""
    out = dict(meta)
    out["modelspec.hash_sha256"] = "0x" + data_sha256
    out["sshs_model_hash"] = data_sha256
    return out


def declared_data_hash(meta: dict[str, str]) -> str | None:
    value = meta.get("modelspec.hash_sha256", "")
    return value[2:] if value.startswith("0x") else (value or None)


def captioner_line(auto: Any) -> str | None:
    """The `zlt.captioner` header value for a job's captions.json (None when nothing was auto-captioned)."""
    if not isinstance(auto, dict) or not auto.get("model"):
        return None
    n = len(auto.get("generated") or [])
    tiny = " [tiny random model]" if auto.get("tiny") else ""
    return f"{auto['model']}@{auto.get('revision') or '?'}: {n} caption(s) generated ({auto.get('prompt')}){tiny}"

