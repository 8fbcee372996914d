"""The one check that a weights file zlt is about to load is a .safetensors file, never pickle."""

from __future__ import annotations

from pathlib import Path

from zlt.core.constants import PICKLE_SUFFIXES
from zlt.core.errors import BadInputError


def ensure_safetensors_path(path: Path) -> None:
    """Refuse anything that is not a .safetensors file, pickle above all."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise BadInputError(
            f"{path}: zlt reads only .safetensors; {suffix} files are pickle and can run code when loaded",
            hint="convert it to .safetensors with the tool that wrote it",
        )
    if suffix != ".safetensors":
        raise BadInputError(f"{path}: not a .safetensors file", hint="zlt reads LoRA weights only from .safetensors")
