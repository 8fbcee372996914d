"""Walk a dataset folder: every file under it, following no symlink that leaves it.

Pure filesystem work (no image decoding). Problems with the folder itself raise `BadInputError`;
problems with single entries are recorded for the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from zlt.core.errors import BadInputError
from zlt.dataset.images import SUPPORTED_EXTS, UNSUPPORTED_EXTS

# Folders that never hold training images: OS litter and the caches trainers write next to images.
IGNORED_DIRS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information"})


def _ignored_dir(name: str) -> bool:
    # ai-toolkit writes `_latent_cache`, `_face_id_cache`, ... inside the dataset folder.
    return name.startswith(".") or name in IGNORED_DIRS or (name.startswith("_") and name.endswith("_cache"))


@dataclass(frozen=True)
class FileEntry:
    rel: str  # POSIX path relative to the dataset root
    size: int
    mtime_ns: int

    @property
    def ext(self) -> str:
        return os.path.splitext(self.rel)[1].lower()

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


@dataclass
class ScanResult:
    root: Path  # resolved
    files: list[FileEntry] = field(default_factory=list)  # every regular file, sorted by rel
    hidden: list[str] = field(default_factory=list)  # hidden files and ignored folders, not scanned
    skipped_links: list[tuple[str, str]] = field(default_factory=list)  # (rel, why)
    unreadable: list[str] = field(default_factory=list)  # sub-folders that could not be listed

    @property
    def images(self) -> list[FileEntry]:
        return [f for f in self.files if f.ext in SUPPORTED_EXTS]

    @property
    def unsupported(self) -> list[FileEntry]:
        return [f for f in self.files if f.ext in UNSUPPORTED_EXTS]

    def with_ext(self, ext: str) -> list[FileEntry]:
        ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
        return [f for f in self.files if f.ext == ext]


def _inside(root_real: str, target: str) -> bool:
    try:
        return os.path.commonpath([root_real, target]) == root_real
    except ValueError:  # different drives on Windows
        return False


def _walk(result: ScanResult, root_real: str) -> None:
    visited: set[str] = {root_real}
    stack: list[tuple[str, str]] = [(root_real, "")]  # (real folder path, rel prefix)
    # Symlinked folders are walked after every real one, so a folder reached both ways is listed by its
    # real path, whatever the names sort like.
    linked: list[tuple[str, str]] = []
    while stack or linked:
        if not stack:
            target, rel = linked.pop(0)
            if target in visited:
                continue
            visited.add(target)
            stack.append((target, rel + "/"))
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if prefix == "":
                raise BadInputError(
                    f"{result.root}: cannot read the dataset folder ({e.strerror or e})",
                    hint="check its permissions (it must be readable and listable)",
                ) from None
            result.unreadable.append(prefix.rstrip("/"))
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not _inside(root_real, target):
                    result.skipped_links.append((rel, f"symlink points outside the dataset folder (to {target})"))
                    continue
                if not os.path.exists(target):
                    result.skipped_links.append((rel, "broken symlink"))
                    continue
                if os.path.isdir(target):
                    if not _ignored_dir(entry.name):
                        linked.append((target, rel))
                    continue
            elif entry.is_dir(follow_symlinks=False):
                if _ignored_dir(entry.name):
                    result.hidden.append(rel + "/")
                    continue
                real = os.path.realpath(entry.path)
                if real not in visited:
                    visited.add(real)
                    stack.append((entry.path, rel + "/"))
                continue
            if entry.name.startswith("."):  # .DS_Store, AppleDouble '._x.jpg' (not images despite the name)
                result.hidden.append(rel)
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError:
                result.unreadable.append(rel)
                continue
            if not entry.is_file(follow_symlinks=True):
                continue  # sockets, fifos
            result.files.append(FileEntry(rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns))


def scan_dataset(path: Path) -> ScanResult:
    """List a dataset folder. Raises BadInputError when it is missing, not a folder, unreadable,
    empty, or holds no image zlt can train on."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BadInputError(
            f"{path}: dataset folder not found", hint="check the path; pass the folder that holds the images"
        )
    if not path.is_dir():
        raise BadInputError(f"{path}: is a file, not a folder", hint="pass the folder that holds the images")
    result = ScanResult(root=path.resolve())
    _walk(result, str(result.root))
    result.files.sort(key=lambda f: f.rel)
    if not result.files:
        what = f" (only {len(result.hidden)} hidden entries)" if result.hidden else ""
        if result.unreadable:
            raise BadInputError(
                f"{path}: no readable files{what}; unreadable: {', '.join(result.unreadable[:5])}",
                hint="check the permissions of the folder and its sub-folders",
            )
        raise BadInputError(
            f"{path}: the dataset folder is empty{what}",
            hint="put training images (png, jpg, jpeg, webp, bmp) in it",
        )
    if not result.images:
        others = [f.rel for f in result.files]
        shown = ", ".join(others[:5]) + (f", ... ({len(others)} files)" if len(others) > 5 else "")
        unsupported = result.unsupported
        hint = "zlt reads png, jpg, jpeg, webp and bmp images"
        if unsupported:
            hint += f"; convert the {len(unsupported)} unsupported image file(s) (e.g. {unsupported[0].rel}) to PNG or JPEG"
        raise BadInputError(f"{path}: no images found, only other files: {shown}", hint=hint)
    return result
