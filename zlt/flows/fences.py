"""Where a caller may point a spec's paths: the fence the gate (zlt/flows/gate.py) runs on the resolved spec.

A network client of `zlt serve` / `zlt mcp --data-root` must not make the server read or write files outside the
folders its operator gave: data roots (datasets), output roots (registries), model roots (weights a loader opens;
a pickle `.bin`/`.ckpt` can run code when loaded). The local CLI has no roots: `Roots()` fences nothing.

Every check here works on one *resolved* value (after presets, `--set` and retrain overrides in any syntax), so a
dict-form override (`output.registry={path: ...}`) cannot slip past a check that looked at request fields only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.callback_url import check_callback_url
from zlt.core.constants import PICKLE_SUFFIXES, TINY_MODEL
from zlt.core.errors import BadInputError, FieldError

MiB = 1 << 20
# owner/repo (base model) or owner/repo/path/file.safetensors (adapter): no leading '.', '/', '~', no '..'.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*$")
KEYWORDS = {"model.base.training_adapter": ("auto", "none")}

# Every path-like field of a spec and what it names: a model folder (hub id or local folder), a weights file, a
# dataset folder, a registry folder, a URL. A new path field of the spec is added here, and nowhere else.
MODEL_DIRS = ("model.base.name", "eval.models.clip", "dataset.caption.auto.model")
MODEL_FILES = ("model.base.training_adapter", "model.base.dit", "model.base.vae", "model.base.text_encoder")
# What a model field names (check_model_value): a folder, one weights file, or either (a ControlNet).
FOLDER, FILE, FOLDER_OR_FILE = "folder", "file", "folder or file"
MODEL_SHAPES = {**{p: FOLDER for p in MODEL_DIRS}, **{p: FILE for p in MODEL_FILES}}
DATASET, REGISTRY, CALLBACK = "dataset.path", "output.registry.path", "job.callback_url"
PATH_FIELDS = (DATASET, REGISTRY, *MODEL_DIRS, *MODEL_FILES, CALLBACK)


@dataclass(frozen=True)
class Limits:
    """Caps on what a client may send."""

    max_upload_bytes: int = 512 * MiB  # request body of a multipart upload
    max_json_bytes: int = 2 * MiB  # any other request body
    max_extract_bytes: int = 2048 * MiB  # total uncompressed size of an uploaded zip
    max_extract_files: int = 20_000  # members of an uploaded zip
    max_ratio: int = 200  # uncompressed/compressed for any member larger than RATIO_FLOOR
    max_dataset_files: int = 100_000  # files walked under a dataset path when checking the fence


@dataclass(frozen=True)
class Roots:
    """The caller's roots. `None` for a kind means no fence for it (the local CLI: all None)."""

    data: tuple[Path, ...] | None = None
    output: tuple[Path, ...] | None = None
    models: tuple[Path, ...] | None = None
    limits: Limits = field(default_factory=Limits)
    # Checks `job.callback_url` and returns it normalised (the server's webhook rules); None: not checked.
    check_url: Callable[[str], str] | None = None

    @property
    def fenced(self) -> bool:
        return any(r is not None for r in (self.data, self.output, self.models))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _no_nul(raw: str, what: str) -> None:
    if "\x00" in raw:
        raise BadInputError(f"{what}: NUL byte in the path", hint="send a plain path")


def _expand(raw: str) -> Path:
    """`~` expanded where it can be (`~nosuchuser` stays as written instead of raising)."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:
        return Path(raw)


def locate(raw: str, roots: list[Path]) -> tuple[Path | None, bool]:
    """Where a client's path lands: (the existing path inside a root it names, or None; whether it names a place
    inside a root at all). An absolute path is taken as it is, a relative one relative to each root in turn.

    Nothing outside the roots is looked at: a path that resolves outside them is "outside" whether or not it exists,
    so the answer is no oracle of what exists on the server. An unreadable or over-long name is "not there"."""
    roots = [r.resolve() for r in roots]
    p = _expand(raw)
    inside_any = False
    for cand in [p] if p.is_absolute() else [r / p for r in roots]:
        try:
            resolved = cand.resolve()  # symlinks followed as far as they exist
            if not any(_inside(resolved, r) for r in roots):
                continue
            inside_any = True
            if resolved.exists():
                return resolved, True
        except (OSError, RuntimeError, ValueError):
            continue
    return None, inside_any


def looks_like_hub_id(value: str, roots: list[Path] | None = None) -> bool:
    """True for 'owner/repo[/file]' that is not also a path under the roots (a loader would read the local one);
    without roots, not a path relative to the current folder."""
    if not _HUB_ID.match(value) or ".." in value.split("/"):
        return False
    try:
        return not any((r / value).exists() for r in roots) if roots is not None else not Path(value).exists()
    except OSError:
        return False


def fence_dataset_path(raw: str, data_roots: list[Path], limits: Limits) -> Path:
    """Resolve a dataset path a client named and insist it (and every file under it) lies in a data root.

    A relative path is taken relative to each data root in turn (the first where it exists wins).
    Raises BadInputError whose message starts with `dataset.path:`.
    """
    _no_nul(raw, DATASET)
    if not data_roots:
        raise BadInputError(
            "dataset.path: this server accepts no dataset paths (it was started without --data-root)",
            hint="upload the dataset as a zip (multipart field 'dataset'), or restart with --data-root DIR",
        )
    roots = [Path(r).resolve() for r in data_roots]
    resolved, inside = locate(raw, roots)
    allowed = ", ".join(str(r) for r in roots)
    if not inside:  # one answer whether or not it exists: no oracle of the server's disk
        raise BadInputError(f"dataset.path: {raw} is outside the server's data roots ({allowed})",
                            hint="move the dataset into a data root, or upload it as a zip")
    if resolved is None:
        raise BadInputError(f"dataset.path: {raw} does not exist under the data roots ({allowed})",
                            hint="give a folder inside a data root, or upload a zip")
    if not resolved.is_dir():
        raise BadInputError(f"dataset.path: {raw} is not a folder", hint="point dataset.path at your image folder")
    walked = 0
    for dirpath, dirnames, filenames in os.walk(resolved, followlinks=False):
        for name in dirnames + filenames:
            walked += 1
            if walked > limits.max_dataset_files:
                raise BadInputError(f"dataset.path: {raw} holds more than {limits.max_dataset_files} files",
                                    hint="point at a smaller folder")
            entry = Path(dirpath) / name
            if entry.is_symlink() and not any(_inside(entry.resolve(), r) for r in roots):
                raise BadInputError(f"dataset.path: {entry} links outside the data roots",
                                    hint="copy the file into the dataset instead of linking it")
    return resolved


def fence_output_path(raw: str, output_roots: list[Path]) -> Path:
    """Resolve `output.registry.path` and insist it lies in an output root (BadInputError `output.registry.path:`)."""
    _no_nul(raw, REGISTRY)
    roots = [Path(r).resolve() for r in output_roots]
    p = _expand(raw)
    if not p.is_absolute():
        p = roots[0] / p
    resolved = p.resolve()
    if not any(_inside(resolved, r) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise BadInputError(f"output.registry.path: {raw} is outside the server's output roots ({allowed})",
                            hint="leave it out to use the default registry, or restart zlt serve with --output-root")
    return resolved


def check_model_value(path: str, value: str, roots: list[Path], *,
                      shape: str | None = None) -> tuple[str | None, FieldError | None]:
    """(the value to use, None) when a network client may name `value` in the model field `path`; else
    (None, the field error saying why and what to do). Local paths come back absolute.

    `shape` (FOLDER, FILE or FOLDER_OR_FILE) is what the field names; default: the spec field's (MODEL_SHAPES). A
    path outside the roots gets one answer whether or not it exists (no oracle of the server's disk); a pickle
    file (.bin, .pt, .ckpt, ...) is refused wherever it lies."""
    if (path == "model.base.name" and value == TINY_MODEL) or value in KEYWORDS.get(path, ()):
        return value, None
    if "\x00" in value:
        return None, FieldError(path, "NUL byte in the path", "send a plain path or a hub id")
    shape = shape or MODEL_SHAPES.get(path, FOLDER)
    if value.lower().endswith(PICKLE_SUFFIXES):
        return None, FieldError(path, f"{value!r}: only .safetensors files are accepted (pickle can run code)",
                                "convert the weights to .safetensors")
    if looks_like_hub_id(value, roots):
        if shape == FILE and path != "model.base.training_adapter":
            return None, FieldError(path, f"{value!r} is not a path inside the server's model roots",
                                    "put the file under a model root (zlt serve --model-root) and name it there")
        if shape == FILE and not value.endswith(".safetensors"):
            return None, FieldError(path, f"{value!r}: only .safetensors files are accepted (pickle can run code)",
                                    "name 'owner/repo/file.safetensors'")
        return value, None
    allowed = ", ".join(str(r) for r in roots) or "none configured"
    if not roots:
        return None, FieldError(path, f"{value!r}: this server accepts no local model paths",
                                "use a hub id, or restart zlt serve with --model-root DIR")
    resolved, inside = locate(value, roots)
    if not inside:
        return None, FieldError(path, f"{value!r} is outside the server's model roots ({allowed})",
                                "move the model into a model root, or use a hub id")
    if resolved is None:
        return None, FieldError(path, f"{value!r} does not exist under the model roots ({allowed})",
                                "give a path inside a model root, or a hub id")
    if resolved.is_file() and shape != FOLDER:
        if resolved.suffix.lower() != ".safetensors":
            return None, FieldError(path, f"{value!r}: only .safetensors files are accepted (pickle can run code)",
                                    "convert the weights to .safetensors")
        return str(resolved), None
    if shape == FILE:
        return None, FieldError(path, f"{value!r}: not a .safetensors file", "name the weights file itself")
    if not resolved.is_dir():
        what = {"eval.models.clip": "a transformers CLIP folder", "model.base.name": "a diffusers model folder"}
        return None, FieldError(path, f"{value!r}: not {what.get(path, 'a model folder')}",
                                "name the model's folder, or a hub id")
    return str(resolved), None


def _as_field_error(err: BadInputError, path: str) -> FieldError:
    """A path-fence error as a field error (its message already starts with the field path)."""
    prefix = f"{path}: "
    return FieldError(path, err.message.removeprefix(prefix), err.hint)


def fence_value(path: str, value: str, roots: Roots) -> tuple[str | None, FieldError | None]:
    """One resolved path-like value against the caller's roots: (value to use, None) or (None, error)."""
    try:
        if path == DATASET and roots.data is not None:
            return str(fence_dataset_path(value, list(roots.data), roots.limits)), None
        if path == REGISTRY and roots.output is not None:
            return str(fence_output_path(value, list(roots.output))), None
        if path == CALLBACK and (roots.check_url is not None or roots.fenced):
            # The server's rule with its allow-list; a fenced caller without one gets the strict default.
            return (roots.check_url or check_callback_url)(value), None
    except BadInputError as e:
        return None, _as_field_error(e, path)
    if path in MODEL_DIRS + MODEL_FILES and roots.models is not None:
        return check_model_value(path, value, list(roots.models))
    return value, None


def get_path(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def fence_paths(data: dict[str, Any], roots: Roots, *, trusted: dict[str, Any] | None = None,
                skip: tuple[str, ...] = ()) -> tuple[dict[str, str], list[FieldError]]:
    """Every path-like field of a resolved spec dict against `roots`: ({path: value to use}, errors).

    `trusted` is a spec whose values were admitted before (a retrain's parent): a value equal to its own passes.
    `skip` names fields the caller set itself (an uploaded dataset folder)."""
    changes: dict[str, str] = {}
    errors: list[FieldError] = []
    for path in PATH_FIELDS:
        value = get_path(data, path)
        if not isinstance(value, str) or path in skip:
            continue
        if trusted is not None and get_path(trusted, path) == value:
            continue
        used, err = fence_value(path, value, roots)
        if err is not None:
            errors.append(err)
        elif used is not None and used != value:
            changes[path] = used
    return changes, errors
