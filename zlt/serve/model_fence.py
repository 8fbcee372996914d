"""Which model files a network client may name: hub ids, or `.safetensors` files under the server's model roots.

`model.base.name`, `training_adapter`, `dit`, `vae` and `text_encoder` end up in loaders. A client of `zlt serve`
must not point them at arbitrary server files (a pickle `.bin`/`.ckpt` can run code when loaded), so over the
API each is either a hub id (downloaded into the cache, safetensors only) or a path inside a model root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from zlt.core.errors import FieldError
from zlt.spec.models import TINY_MODEL

# owner/repo (base model) or owner/repo/path/file.safetensors (adapter): no leading '.', '/', '~', no '..'.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*$")
# Fields that name one weights file (hub file or local file); model.base.name names a model (hub repo or folder).
FILE_FIELDS = ("training_adapter", "dit", "vae", "text_encoder")
KEYWORDS = {"training_adapter": ("auto", "none")}


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def looks_like_hub_id(value: str) -> bool:
    """True for 'owner/repo[/file]' that is not also a path on this server (a loader would read the local one)."""
    return bool(_HUB_ID.match(value)) and ".." not in value.split("/") and not Path(value).exists()


def check_model_value(field: str, value: str, roots: list[Path]) -> FieldError | None:
    """None when `value` may be used by a network client; else the field error saying why and what to do."""
    path = f"model.base.{field}"
    if field == "name" and value == TINY_MODEL:
        return None
    if value in KEYWORDS.get(field, ()):
        return None
    is_file = field in FILE_FIELDS
    if looks_like_hub_id(value):
        if is_file and field != "training_adapter":
            return FieldError(path, f"{value!r} is not a path inside the server's model roots",
                              "put the file under a model root (zlt serve --model-root) and name it there")
        if is_file and not value.endswith(".safetensors"):
            return FieldError(path, f"{value!r}: only .safetensors files are accepted (pickle can run code)",
                              "name 'owner/repo/file.safetensors'")
        return None
    allowed = ", ".join(str(r) for r in roots) or "none configured"
    if not roots:
        return FieldError(path, f"{value!r}: this server accepts no local model paths",
                          "use a hub id, or restart zlt serve with --model-root DIR")
    p = Path(value).expanduser()
    candidates = [p] if p.is_absolute() else [r / p for r in roots]
    resolved = next((c.resolve() for c in candidates if c.exists()), None)
    if resolved is None:
        return FieldError(path, f"{value!r} does not exist under the model roots ({allowed})",
                          "give a path inside a model root, or a hub id")
    if not any(_inside(resolved, r.resolve()) for r in roots):
        return FieldError(path, f"{value!r} is outside the server's model roots ({allowed})",
                          "move the model into a model root, or use a hub id")
    if is_file and (not resolved.is_file() or resolved.suffix.lower() != ".safetensors"):
        return FieldError(path, f"{value!r}: only .safetensors files are accepted (pickle can run code)",
                          "convert the weights to .safetensors")
    if not is_file and not resolved.is_dir():
        return FieldError(path, f"{value!r}: not a diffusers model folder", "name the folder with model_index.json")
    return None


def fence_model_paths(data: dict[str, Any], roots: list[Path]) -> list[FieldError]:
    """Check every model path in a client's spec dict; fence-approved local paths become absolute in place."""
    model = data.get("model")
    base = model.get("base") if isinstance(model, dict) else None
    if not isinstance(base, dict):
        return []
    errors = []
    for field in ("name", *FILE_FIELDS):
        value = base.get(field)
        if not isinstance(value, str):
            continue
        err = check_model_value(field, value, roots)
        if err is not None:
            errors.append(err)
        elif not looks_like_hub_id(value) and value not in KEYWORDS.get(field, ()) and value != TINY_MODEL:
            p = Path(value).expanduser()
            cands = [p] if p.is_absolute() else [r / p for r in roots]
            base[field] = str(next(c.resolve() for c in cands if c.exists()))
    return errors
