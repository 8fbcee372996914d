"""Is the metric model of `zlt eval` loadable? A local folder, a hub id in the Hugging Face cache, or the built-in
tiny CLIP (`zlt/tiny-clip`: random weights built from a config, nothing downloaded; it measures nothing and exists
so the evaluation path runs offline on a CPU). Checked before anything is drawn, by preflight, `zlt eval`, the
evaluation gate and `zlt doctor`.

A hub id that is not cached would be downloaded; when the hub cannot be reached (or HF_HUB_OFFLINE=1) that is
refused at once with the fix, instead of transformers retrying the network for a minute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.core.constants import PICKLE_SUFFIXES
from zlt.core.errors import EnvNotReadyError

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
TINY_CLIP = "zlt/tiny-clip"  # built in, like zlt/tiny-zimage
PROBE_TIMEOUT_S = 3.0


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class ModelCheck:
    """What preflight says about one metric model."""

    name: str
    ok: bool
    source: str  # builtin | local | cache | download | missing
    message: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "source": self.source, "message": self.message, "hint": self.hint}


def fix_hint(name: str) -> str:
    return (f"download it once where there is network (hf download {name}; then HF_HUB_OFFLINE=1 uses the cache), "
            "or set eval.models.clip / --clip to a local folder holding a transformers CLIP model (config.json, "
            f".safetensors weights, tokenizer, preprocessor_config.json); for a smoke test: --clip {TINY_CLIP}")


def clip_folder_problem(path: Path, *, need_weights: bool = False) -> str | None:
    """What keeps a local folder from being a CLIP model zlt loads (None: nothing). The weights must be
    .safetensors: ClipScorer never falls back to a pickle pytorch_model.bin (it can run code when loaded).
    `need_weights`: a folder with no weights file at all is refused too (a client's request, checked at submit)."""
    if not (path / "config.json").is_file():
        return "has no config.json: not a transformers model folder"
    if any(path.glob("*.safetensors")):
        return None
    if need_weights or any(f.suffix.lower() in PICKLE_SUFFIXES for f in path.iterdir()):
        return "holds no .safetensors weights (zlt never loads pickle .bin/.pt weights: they can run code)"
    return None


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the hub (HF_ENDPOINT, else huggingface.co), no retries: can a download start?"""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def check_clip(name: str, *, probe: bool = True) -> ModelCheck:
    """Is the CLIP model loadable without surprises? Never downloads. `probe`: when a hub id is not cached, try
    one connection to the hub (refused at once when there is none); without it, say it would be downloaded."""
    if name == TINY_CLIP:
        return ModelCheck(name, True, "builtin", f"{TINY_CLIP}: built-in tiny random CLIP (a smoke test: its scores "
                                                 "measure nothing)")
    path = Path(name).expanduser()
    if path.is_dir():
        problem = clip_folder_problem(path)
        if problem is None:
            return ModelCheck(name, True, "local", f"CLIP model folder {path}")
        return ModelCheck(name, False, "missing", f"{path} {problem}", fix_hint(DEFAULT_CLIP))
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        return ModelCheck(name, False, "missing", f"CLIP model {name!r}: no such folder", fix_hint(DEFAULT_CLIP))
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return ModelCheck(name, False, "missing", "huggingface_hub is not installed",
                          "pip install 'zlt[train]' (transformers brings huggingface_hub)")
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return ModelCheck(name, True, "cache", f"CLIP model {name} is in the Hugging Face cache")
    if offline():
        return ModelCheck(name, False, "missing",
                          f"CLIP model {name} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading",
                          fix_hint(name))
    if probe and not hub_reachable():
        host = os.environ.get("HF_ENDPOINT") or "huggingface.co"
        return ModelCheck(name, False, "missing", f"CLIP model {name} is not in the Hugging Face cache and {host} "
                          "cannot be reached to download it (offline?)", fix_hint(name))
    return ModelCheck(name, True, "download", f"CLIP model {name} is not cached; it will be downloaded on first use")


def require_clip(name: str) -> ModelCheck:
    check = check_clip(name)
    if not check.ok:
        raise EnvNotReadyError(f"metric model: {check.message}", hint=check.hint)
    return check
