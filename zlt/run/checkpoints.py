"""The trainer's saved LoRA files, listed and read without torch.

Names:
- ai-toolkit and the built-in trainer: `<name>_<step:09d>.safetensors`, final `<name>.safetensors`,
  under `<output>/<name>/` (ai-toolkit's training folder layout) or `<output>/`;
- musubi: `<name>-step<step:08d>.safetensors`, `<name>-<epoch:06d>.safetensors`, final
  `<name>.safetensors`, and resumable `<name>-step<step:08d>-state/` folders. A musubi resume writes
  into `<output>/resume_from_<step:08d>/` because its step counter restarts at 0: the folder name
  is the offset to add.

A safetensors file starts with an 8-byte little-endian header length and a JSON header whose
`__metadata__` holds ai-toolkit's `training_info` (`{"step", "epoch"}`) or musubi's `ss_steps`.

The built-in trainer keeps its resume states (optimizer, scheduler, RNG) as `state/<name>_<step:09d>.safetensors`,
the same names as its LoRA files: they are told apart by their header (`zlt.state_step`) and never listed.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.core.fsutil import atomic_write_json

MAX_HEADER = 100 * 1024 * 1024
RESUME_DIR = re.compile(r"^resume_from_(\d+)$")
_STEP_9 = re.compile(r"^(?P<name>.+)_(?P<step>\d{9})$")
_STEP_8 = re.compile(r"^(?P<name>.+)-step(?P<step>\d{8})$")
_EPOCH_6 = re.compile(r"^(?P<name>.+)-(?P<epoch>\d{6})$")
_STATE = re.compile(r"^(?P<name>.+?)(?:-step(?P<step>\d{8})|-(?P<epoch>\d{6}))?-state$")
_SKIP_DIRS = {"samples", "sample", "logs", "cache", ".cache", "tensorboard"}
STATE_MARKER = "zlt.state_step"  # header key of the built-in trainer's resume states (zlt/trainer/checkpoint.py)


def is_resume_state(meta: dict[str, Any]) -> bool:
    """A built-in trainer resume state (optimizer tensors), not a LoRA."""
    return STATE_MARKER in meta


class HeaderError(ValueError):
    pass


def _read_header(path: Path) -> tuple[int, dict[str, Any]]:
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise HeaderError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n <= 0 or n > MAX_HEADER:
            raise HeaderError(f"{path}: implausible header length {n}")
        data = fh.read(n)
    if len(data) != n:
        raise HeaderError(f"{path}: header truncated ({len(data)} of {n} bytes)")
    try:
        header = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HeaderError(f"{path}: header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise HeaderError(f"{path}: header is not an object")
    return n, header


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor index and `__metadata__`)."""
    return _read_header(path)[1]


def _payload_end(header: dict[str, Any]) -> int:
    """Bytes of tensor data the header promises (the largest end offset)."""
    end = 0
    for k, v in header.items():
        if k != "__metadata__" and isinstance(v, dict):
            offs = v.get("data_offsets") or [0, 0]
            end = max(end, int(offs[1]))
    return end


def metadata_step(meta: dict[str, Any]) -> tuple[int | None, int | None]:
    """(step, epoch) from ai-toolkit's training_info or musubi/kohya's ss_steps/ss_epoch."""
    info = meta.get("training_info")
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except json.JSONDecodeError:
            info = None
    if isinstance(info, dict) and str(info.get("step", "")).lstrip("-").isdigit():
        epoch = info.get("epoch")
        return int(info["step"]), int(epoch) if str(epoch).isdigit() else None
    step = meta.get("ss_steps")
    epoch = meta.get("ss_epoch")
    return (int(step) if str(step).isdigit() else None, int(epoch) if str(epoch).isdigit() else None)


@dataclass
class CheckpointFile:
    path: Path
    step: int | None
    final: bool
    size: int
    epoch: int | None = None
    valid: bool = True
    problem: str | None = None
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"step": self.step, "path": str(self.path), "final": self.final, "size": self.size,
             "epoch": self.epoch, "valid": self.valid}
        if self.problem:
            d["problem"] = self.problem
        return d


def _offset_of(path: Path, root: Path) -> int:
    for part in path.relative_to(root).parts[:-1]:
        m = RESUME_DIR.match(part)
        if m:
            return int(m.group(1))
    return 0


def inspect_checkpoint(path: Path, name: str, offset: int = 0) -> CheckpointFile | None:
    """One .safetensors file -> a CheckpointFile, or None when the name is not one of this job's."""
    stem = path.stem
    step_from_name: int | None = None
    epoch: int | None = None
    if stem == name:
        final = True
    else:
        final = False
        m = _STEP_9.match(stem) or _STEP_8.match(stem)
        if m and m.group("name") == name:
            step_from_name = int(m.group("step"))
        else:
            m = _EPOCH_6.match(stem)
            if not (m and m.group("name") == name):
                return None
            epoch = int(m.group("epoch"))
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    ck = CheckpointFile(path=path, step=None, final=final, size=size, epoch=epoch)
    try:
        n, header = _read_header(path)
        meta = header.get("__metadata__") or {}
        ck.metadata = meta if isinstance(meta, dict) else {}
        if is_resume_state(ck.metadata):
            return None
        meta_step, meta_epoch = metadata_step(ck.metadata)
        # A file cut short while saving has a header promising more bytes than it holds.
        if size < 8 + n + _payload_end(header):
            ck.valid, ck.problem = False, "file is shorter than its header says (interrupted save?)"
    except (HeaderError, OSError, ValueError, TypeError) as e:  # a bad offset in a header is a bad file
        ck.valid, ck.problem = False, str(e)
        meta_step, meta_epoch = None, None
    step = step_from_name if step_from_name is not None else meta_step
    ck.step = step + offset if step is not None else None
    ck.epoch = ck.epoch if ck.epoch is not None else meta_epoch
    return ck


def _is_state_dir(folder: Path) -> bool:
    """The built-in trainer's `state/` folder: each tensor file has its `.json` description beside it."""
    return folder.name == "state" and any(p.with_suffix(".json").is_file() for p in folder.glob("*.safetensors"))


def _walk(root: Path, depth: int = 3):
    if depth < 0 or not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            if entry.name not in _SKIP_DIRS and not entry.name.endswith("-state") and not _is_state_dir(entry):
                yield from _walk(entry, depth - 1)
        elif entry.suffix == ".safetensors":
            yield entry


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def scan_checkpoints(output_dir: Path, name: str) -> list[CheckpointFile]:
    """This job's LoRA files under output_dir, sorted by step; final files last."""
    out = []
    for path in _walk(output_dir):
        ck = inspect_checkpoint(path, name, _offset_of(path, output_dir))
        if ck is not None:
            out.append(ck)
    out.sort(key=lambda c: (c.final, c.step if c.step is not None else -1, _mtime(c.path), str(c.path)))
    return out


@dataclass
class StateDir:
    path: Path
    step: int  # global step (resume offset added)


def latest_state(output_dir: Path, name: str) -> StateDir | None:
    """musubi's newest `<name>-step<N>-state/` folder (by global step) for `--resume`."""
    best: StateDir | None = None
    if not output_dir.is_dir():
        return None
    candidates = [output_dir] + [p for p in output_dir.iterdir() if p.is_dir() and RESUME_DIR.match(p.name)]
    for folder in candidates:
        offset = _offset_of(folder / "x", output_dir)
        for entry in folder.iterdir():
            m = _STATE.match(entry.name)
            if not (entry.is_dir() and m and m.group("name") == name and m.group("step")):
                continue
            step = int(m.group("step")) + offset
            if best is None or step > best.step:
                best = StateDir(entry, step)
    return best


def latest_checkpoint(checkpoints: list[CheckpointFile]) -> CheckpointFile | None:
    valid = [c for c in checkpoints if c.valid]
    finals = [c for c in valid if c.final]
    if finals:
        return max(finals, key=lambda c: c.step or 0)
    return valid[-1] if valid else None


def write_checkpoints_json(job_dir: Path, backend: str, output_dir: Path, checkpoints: list[CheckpointFile],
                           *, states: list[StateDir] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "backend": backend,
        "output_dir": str(output_dir),
        "checkpoints": [c.to_dict() for c in checkpoints],
    }
    if states:
        doc["states"] = [{"step": s.step, "path": str(s.path)} for s in states]
    atomic_write_json(job_dir / "checkpoints.json", doc)
    return doc
