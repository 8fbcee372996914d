"""Where registry folders live. `local` today; an object store would implement the same four methods
(`begin`, `exists`, `publish`, `abort`) without touching collection or training.

Atomicity: an artifact is built in a hidden staging folder inside the registry (same filesystem) and published
with one `rename`. A reader, a crash or a SIGKILL never leaves a half-built folder under the artifact's name;
at worst a `.staging-*` folder, which the next collection on this host removes once its process is gone.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
from pathlib import Path

from zlt.core.errors import EnvNotReadyError
from zlt.core.paths import default_registry_dir
from zlt.spec.models import JobSpec

STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"


def registry_root(spec: JobSpec, home: Path) -> Path:
    """`output.registry.path` (relative paths are relative to ZLT_HOME), else <ZLT_HOME>/artifacts/lora."""
    raw = spec.output.registry.path
    if not raw:
        return default_registry_dir(home)
    p = Path(raw).expanduser()
    return (p if p.is_absolute() else home / p).resolve()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalRegistry:
    """A folder of artifact folders."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EnvNotReadyError(
                f"registry folder {self.root} cannot be created: {e.strerror or e}",
                hint="set output.registry.path to a writable folder, or leave it empty for <ZLT_HOME>/artifacts/lora",
            ) from None
        if not os.access(self.root, os.W_OK):
            raise EnvNotReadyError(f"registry folder {self.root} is not writable", hint="fix its permissions or pick another")

    def path_for(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.root / name)

    def begin(self) -> Path:
        """A fresh staging folder; its name records host and pid so stale ones can be recognised."""
        self._ensure_root()
        self.sweep_stale()
        host = socket.gethostname().replace("-", "_") or "host"
        staging = self.root / f"{STAGING_PREFIX}{host}-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        return staging

    def publish(self, staging: Path, name: str) -> Path:
        """Rename the staging folder to `name`. FileExistsError if the name is taken: never overwrites."""
        target = self.root / name
        if os.path.lexists(target):
            raise FileExistsError(target)
        try:
            os.rename(staging, target)
        except OSError as e:
            # Lost a race against another collector (non-empty target) or a file of that name.
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(target) from None
            raise
        _fsync_dir(self.root)
        return target

    def abort(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def sweep_stale(self) -> list[Path]:
        """Remove staging/trash folders left by dead processes on this host (copies only, never a published artifact)."""
        removed: list[Path] = []
        host = socket.gethostname().replace("-", "_") or "host"
        if not self.root.is_dir():
            return removed
        for entry in self.root.iterdir():
            prefix = next((p for p in (STAGING_PREFIX, TRASH_PREFIX) if entry.name.startswith(p)), None)
            if prefix is None or not entry.is_dir():
                continue
            parts = entry.name[len(prefix):].split("-")
            if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
                continue
            if not _pid_alive(int(parts[1])):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        return removed

    def remove(self, folder: Path) -> None:
        """Delete a published folder: renamed away first, so no half-deleted folder keeps the artifact's name."""
        host = socket.gethostname().replace("-", "_") or "host"
        trash = self.root / f"{TRASH_PREFIX}{host}-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(folder, trash)
        _fsync_dir(self.root)
        shutil.rmtree(trash)


def open_registry(spec: JobSpec, home: Path) -> LocalRegistry:
    if spec.output.registry.type != "local":  # the spec model admits only 'local' today
        raise EnvNotReadyError(f"output.registry.type: '{spec.output.registry.type}' is not supported yet")
    return LocalRegistry(registry_root(spec, home))
