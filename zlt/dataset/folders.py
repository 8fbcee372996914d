"""Writing a prepared folder safely: a per-folder lock, a temp folder renamed into place, and the
source key that lets an unchanged source skip all work.

A folder is complete exactly when it holds `manifest.json`: the manifest is written last inside the
temp folder, and the temp folder becomes OUT by one rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError
from zlt.core.fsutil import sha256_json
from zlt.dataset.scan import ScanResult

MANIFEST = "manifest.json"
SOURCE_KEY_FILE = ".zlt-source-key"
# Bump when the prepared output of the same source and parameters would change.
PREP_VERSION = 1


def source_key(scan: ScanResult, params: dict[str, Any]) -> str:
    """Identifies source + parameters without reading any image: every file's path, size and mtime."""
    listing = [[f.rel, f.size, f.mtime_ns] for f in scan.files]
    return sha256_json({"prep_version": PREP_VERSION, "files": listing, "params": params})


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of a complete prepared folder, or None."""
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "dataset_sha256" not in data or not isinstance(data.get("images"), list):
        return None
    return data


def outputs_present(out: Path, manifest: dict[str, Any]) -> bool:
    """Every image and caption the manifest lists is still there (a cheap stat, no hashing)."""
    ext = manifest.get("params", {}).get("caption_ext", "txt")
    for entry in manifest["images"]:
        name = entry.get("file", "")
        if not (out / name).is_file() or not (out / f"{name.rsplit('.', 1)[0]}.{ext}").is_file():
            return False
    return True


def check_out_dir(src: Path, out: Path) -> None:
    """Refuse an OUT that would clobber user files or be scanned as part of the source."""
    src_r, out_r = src.resolve(), out.resolve()
    if out_r == src_r or src_r in out_r.parents:
        raise BadInputError(
            f"{out}: the output folder is inside the source folder {src}",
            hint="write it next to the source, e.g. --out " + str(src_r.parent / (src_r.name + "_prepared")),
        )
    if out_r in src_r.parents:
        raise BadInputError(f"{out}: the output folder contains the source folder {src}", hint="pick another --out")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is a file", hint="pick a folder path for --out")
    if out.is_dir() and read_manifest(out) is None and any(out.iterdir()):
        raise BadInputError(
            f"{out}: exists, is not empty and was not written by 'zlt dataset prepare'; refusing to replace it",
            hint="pick a new or empty folder for --out",
        )


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """One prepare per OUT at a time (two jobs sharing a cached dataset wait for each other)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.parent / f".{out.name}.lock"
    with open(lock_path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; concurrent prepares of one OUT are unsupported there
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def clean_stale(out: Path) -> None:
    """Remove temp folders a killed prepare left behind (call while holding the lock)."""
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.parent.glob(f".{out.name}.old-*"):
        shutil.rmtree(p, ignore_errors=True)


def new_temp_dir(out: Path) -> Path:
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    return tmp


def swap_in(tmp: Path, out: Path) -> None:
    """Make `tmp` the new OUT; a previous prepared OUT is removed only after the new one is in place."""
    if out.is_dir():
        if not any(out.iterdir()):
            out.rmdir()
        else:
            old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
    os.rename(tmp, out)
