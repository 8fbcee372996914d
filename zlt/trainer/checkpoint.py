"""What a run leaves: LoRA files in diffusers layout and resume states, all safetensors + JSON, no pickle.

- `<name>_<step:09d>.safetensors` every save_every steps, `<name>.safetensors` at the end. Keys are
  `transformer.<module>.lora_A/B.weight` with `lora_adapter_metadata` (rank, alpha, targets), which is what
  `ZImagePipeline.save_lora_weights` writes and `load_lora_weights` reads; `training_info` = {"step", "epoch"}.
- `state/<name>_<step:09d>.safetensors` + `.json`: fp32 LoRA weights, optimizer, scheduler, RNG streams, step and
  data position. The JSON is written last and names the tensors' sha256, so a torn save is never resumed from.
Retention: before each write the oldest step files beyond `keep` go; the final file is never pruned.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.core.fsutil import atomic_write_bytes, atomic_write_text, sha256_bytes

STATE_VERSION = 1
STATE_DIR = "state"
ADAPTER = "default"
FILE_MODE = 0o644  # artifacts are for sharing; mkstemp would leave them 0600


def step_file(out: Path, name: str, step: int) -> Path:
    return out / f"{name}_{step:09d}.safetensors"


def final_file(out: Path, name: str) -> Path:
    return out / f"{name}.safetensors"


def step_files(folder: Path, name: str, suffix: str = ".safetensors") -> list[tuple[int, Path]]:
    """(step, path) of `<name>_<step:09d><suffix>` in folder, sorted by step."""
    pat = re.compile(re.escape(name) + r"_(\d{9})" + re.escape(suffix) + "$")
    out = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = pat.match(p.name)
            if m:
                out.append((int(m.group(1)), p))
    return sorted(out)


def prune(folder: Path, name: str, keep: int, before_step: int, suffixes: tuple[str, ...]) -> list[Path]:
    """Delete the oldest step files so that, with the one about to be written, `keep` remain."""
    removed = []
    old = [(s, p) for s, p in step_files(folder, name, suffixes[0]) if s < before_step]
    for _s, p in old[: max(0, len(old) - (keep - 1))]:
        for suf in suffixes:
            q = p.with_name(p.name[: -len(suffixes[0])] + suf)
            if q.exists():
                q.unlink()
                removed.append(q)
    return removed


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()}


def lora_metadata(transformer, *, step: int, epoch: int, extra: dict[str, str]) -> dict[str, str]:
    peft_cfg = _jsonable(transformer.peft_config[ADAPTER].to_dict())
    meta = {
        "format": "pt",
        "lora_adapter_metadata": json.dumps({f"transformer.{k}": v for k, v in peft_cfg.items()}, sort_keys=True, default=str),
        "training_info": json.dumps({"step": step, "epoch": epoch}),
    }
    meta.update(extra)
    return meta


def lora_tensors(transformer, dtype=None) -> dict[str, Any]:
    from peft.utils import get_peft_model_state_dict

    sd = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
    return {f"transformer.{k}": (v.to(dtype) if dtype is not None else v).detach().cpu().contiguous() for k, v in sd.items()}


def save_lora(path: Path, transformer, *, dtype, step: int, epoch: int, extra: dict[str, str]) -> Path:
    from safetensors.torch import save

    data = save(lora_tensors(transformer, dtype), metadata=lora_metadata(transformer, step=step, epoch=epoch, extra=extra))
    atomic_write_bytes(path, data, mode=FILE_MODE)
    return path


# --- resume state -------------------------------------------------------------------------------------------

def split_tensors(obj: Any, prefix: str, out: dict[str, Any]) -> Any:
    """Replace every tensor in a nested structure by {"__tensor__": key} and collect it in `out`; dict keys keep
    their type (optimizer state is keyed by int)."""
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__items__": [[k, split_tensors(v, f"{prefix}.{k}", out)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_tensors(v, f"{prefix}.{i}", out) for i, v in enumerate(obj)]
    return obj


def join_tensors(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__items__" in obj:
        return {k: join_tensors(v, tensors) for k, v in obj["__items__"]}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


@dataclass
class ResumeState:
    step: int
    epoch: int
    batch_in_epoch: int
    trainable: dict[str, Any]  # parameter name -> fp32 tensor
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]  # torch / cuda / noise generator states and the python data stream
    precision: dict[str, Any]
    fingerprint: dict[str, str]
    data_order: list[list[list[int]]]
    path: Path | None = None


def save_state(out: Path, name: str, st: ResumeState, keep: int) -> Path:
    from safetensors.torch import save

    folder = out / STATE_DIR
    prune(folder, name, keep, st.step, (".json", ".safetensors"))
    tensors: dict[str, Any] = {}
    doc = {
        "version": STATE_VERSION,
        "step": st.step,
        "epoch": st.epoch,
        "batch_in_epoch": st.batch_in_epoch,
        "trainable": split_tensors(st.trainable, "lora", tensors),
        "optimizer": split_tensors(st.optimizer, "optim", tensors),
        "scheduler": split_tensors(st.scheduler, "sched", tensors),
        "rng": split_tensors(st.rng, "rng", tensors),
        "precision": split_tensors(st.precision, "prec", tensors),
        "fingerprint": st.fingerprint,
        "data_order": st.data_order,
    }
    blob = save(tensors, metadata={"zlt.state_step": str(st.step)})
    tpath = folder / f"{name}_{st.step:09d}.safetensors"
    atomic_write_bytes(tpath, blob, mode=FILE_MODE)
    doc["tensors"] = {"file": tpath.name, "sha256": sha256_bytes(blob)}
    jpath = tpath.with_suffix(".json")
    atomic_write_text(jpath, json.dumps(doc, indent=1) + "\n", mode=FILE_MODE)
    return jpath


def load_state(jpath: Path) -> ResumeState:
    """One resume state; raises ValueError when it is torn or from another format."""
    from safetensors.torch import load

    doc = json.loads(jpath.read_text(encoding="utf-8"))
    if doc.get("version") != STATE_VERSION:
        raise ValueError(f"{jpath.name}: state version {doc.get('version')} (expected {STATE_VERSION})")
    blob = (jpath.parent / doc["tensors"]["file"]).read_bytes()
    if sha256_bytes(blob) != doc["tensors"]["sha256"]:
        raise ValueError(f"{jpath.name}: tensor file does not match its sha256 (torn save)")
    tensors = load(blob)
    return ResumeState(
        step=doc["step"], epoch=doc["epoch"], batch_in_epoch=doc["batch_in_epoch"],
        trainable=join_tensors(doc["trainable"], tensors), optimizer=join_tensors(doc["optimizer"], tensors),
        scheduler=join_tensors(doc["scheduler"], tensors), rng=join_tensors(doc["rng"], tensors),
        precision=join_tensors(doc["precision"], tensors), fingerprint=doc["fingerprint"],
        data_order=doc["data_order"], path=jpath,
    )


def latest_state(out: Path, name: str, warn) -> ResumeState | None:
    """The newest valid resume state; damaged newer ones are reported and skipped."""
    for _step, jpath in reversed(step_files(out / STATE_DIR, name, ".json")):
        try:
            return load_state(jpath)
        except (ValueError, KeyError, OSError, json.JSONDecodeError) as e:
            warn(f"skipping resume state {jpath}: {e}")
    return None
