"""Where a job's dataset may come from over the network, and nowhere else.

- An uploaded zip is extracted by `extract_zip`, fenced: no absolute names, no `..`, no symlinks or device
  files, no encrypted members, a cap on members and on total uncompressed bytes (counted while writing, not
  trusted from the header), a cap on per-member compression ratio. Anything wrong refuses the whole upload
  and leaves nothing behind.
- A dataset *path* a client names is fenced by the gate (zlt/flows/fences.py `fence_dataset_path`), on the
  resolved spec.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from zlt.core.errors import BadInputError
from zlt.flows.fences import Limits, MiB

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
_SKIPPED_PREFIXES = ("__MACOSX/",)  # Finder's resource forks: never part of a dataset


RATIO_FLOOR = 1 * MiB  # small members compress well legitimately (captions); only big ones are judged


class UploadRefused(BadInputError):
    """An uploaded file the server will not accept (hostile or malformed zip)."""

    kind = "upload_refused"
    status = 400


class UploadTooLarge(UploadRefused):
    """An upload (or what it expands to) beyond the server's caps."""

    kind = "upload_too_large"
    status = 413


@dataclass
class Extracted:
    """What an accepted zip became."""

    root: Path  # the dataset folder to train on
    files: int
    bytes: int


def _member_parts(name: str) -> tuple[str, ...]:
    """The path components of a zip member name, or UploadRefused when it could land outside the target."""
    if "\x00" in name:
        raise UploadRefused(f"zip member {name!r}: NUL in the name", hint="re-create the zip with plain file names")
    norm = name.replace("\\", "/")  # zips made on Windows, and zip-slip payloads, use backslashes
    if norm.startswith("/") or _WINDOWS_DRIVE.match(norm):
        raise UploadRefused(f"zip member {name!r}: absolute path", hint="zip the dataset folder with relative names")
    parts = tuple(p for p in PurePosixPath(norm).parts if p not in ("", "."))
    if ".." in parts:
        raise UploadRefused(f"zip member {name!r}: '..' would escape the upload folder (zip-slip)",
                            hint="zip the dataset folder with relative names")
    return parts


def _member_kind(info: zipfile.ZipInfo) -> str:
    """'dir', 'file', or the reason the member is refused."""
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):  # made on Unix with a file type: the high bits are st_mode
        if stat.S_ISLNK(mode):
            return "symlink"
        if stat.S_ISDIR(mode):
            return "dir"
        if not stat.S_ISREG(mode):
            return "special file"
    return "dir" if info.is_dir() else "file"


def check_zip(zf: zipfile.ZipFile, limits: Limits) -> list[tuple[zipfile.ZipInfo, tuple[str, ...], str]]:
    """Every member with its safe path parts and kind; UploadRefused for the first hostile one."""
    infos = zf.infolist()
    if len(infos) > limits.max_extract_files:
        raise UploadTooLarge(f"zip has {len(infos)} members; the limit is {limits.max_extract_files}",
                             hint="upload fewer files, or split the dataset")
    declared = 0
    out = []
    seen: set[tuple[str, ...]] = set()
    for info in infos:
        if info.filename.replace("\\", "/").startswith(_SKIPPED_PREFIXES):
            continue
        parts = _member_parts(info.filename)
        kind = _member_kind(info)
        if kind in ("symlink", "special file"):
            raise UploadRefused(f"zip member {info.filename!r} is a {kind}; only files and folders are accepted",
                                hint="zip the real files (zip without -y)")
        if info.flag_bits & 0x1:
            raise UploadRefused(f"zip member {info.filename!r} is encrypted", hint="upload an unencrypted zip")
        if not parts:
            continue
        if parts in seen:
            raise UploadRefused(f"zip member {info.filename!r} appears twice", hint="re-create the zip")
        seen.add(parts)
        if kind == "file":
            declared += info.file_size
            if declared > limits.max_extract_bytes:
                raise UploadTooLarge(
                    f"zip expands to more than {limits.max_extract_bytes // MiB} MiB", hint="upload a smaller dataset"
                )
            if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise UploadTooLarge(
                    f"zip member {info.filename!r} expands {info.file_size // max(info.compress_size, 1)}x "
                    f"(limit {limits.max_ratio}x): refused as a zip bomb", hint="upload the images as they are",
                )
        out.append((info, parts, kind))
    return out


def _copy_capped(src, dst, budget: int, name: str) -> int:
    """Copy a member, counting real bytes: a header that lies about sizes cannot get past the cap."""
    written = 0
    while True:
        block = src.read(1 << 16)
        if not block:
            return written
        written += len(block)
        if written > budget:
            raise UploadTooLarge(f"zip member {name!r} expands past the size limit", hint="upload a smaller dataset")
        dst.write(block)


def extract_zip(zip_file: Path | BinaryIO, uploads_dir: Path, limits: Limits, label: str = "dataset") -> Extracted:
    """Extract an uploaded zip (a path or a seekable binary file) into a new folder under `uploads_dir`; all or
    nothing.

    The dataset root is the zip's single top-level folder when it has one (a zipped folder), else the
    extraction folder itself. `label` (e.g. the upload's file name) names the folder, so a spec without a
    `name` gets a readable one.
    """
    stem = re.sub(r"[^a-z0-9_-]+", "_", Path(label).stem.lower()).strip("_-")[:48] or "dataset"
    final = uploads_dir / f"{secrets.token_hex(4)}" / stem
    tmp = uploads_dir / f".incoming-{secrets.token_hex(6)}"
    tmp.mkdir(parents=True)
    try:
        try:
            zf = zipfile.ZipFile(zip_file)
        except (zipfile.BadZipFile, OSError) as e:
            raise UploadRefused(f"the dataset upload is not a zip file ({e})", hint="send a .zip of the image folder") from None
        with zf:
            members = check_zip(zf, limits)
            budget = limits.max_extract_bytes
            files = 0
            root = tmp.resolve()
            for info, parts, kind in members:
                target = root.joinpath(*parts)
                if os.path.commonpath([root, target.resolve()]) != str(root):  # belt and braces after _member_parts
                    raise UploadRefused(f"zip member {info.filename!r} escapes the upload folder")
                if kind == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(target, "xb") as dst:
                        budget -= _copy_capped(src, dst, budget, info.filename)
                except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
                    raise UploadRefused(f"zip member {info.filename!r} cannot be read ({e})",
                                        hint="re-create the zip with standard compression") from None
                except FileExistsError:
                    raise UploadRefused(f"zip member {info.filename!r} appears twice", hint="re-create the zip") from None
                files += 1
        if files == 0:
            raise UploadRefused("the zip holds no files", hint="zip the folder with your images and captions")
        top = [p for p in tmp.iterdir() if not p.name.startswith(".")]
        src_root = top[0] if len(top) == 1 and top[0].is_dir() else tmp
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src_root, final)
        return Extracted(root=final, files=files, bytes=limits.max_extract_bytes - budget)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own temp folder: the accepted dataset was moved out
