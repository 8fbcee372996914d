"""Where zlt keeps its state. Everything hangs off ZLT_HOME so tests can point it at a temp dir."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # zlt/, above zlt/core/


def zlt_home(override: str | os.PathLike[str] | None = None) -> Path:
    """`--home` beats `ZLT_HOME` beats `~/.local/share/zlt`."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("ZLT_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path("~/.local/share/zlt").expanduser()


def user_config_path() -> Path:
    env = os.environ.get("ZLT_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "zlt" / "config.toml"


def jobs_dir(home: Path) -> Path:
    """Job folders: `ZLT_JOBS_ROOT` (a path every worker host reaches) or `<ZLT_HOME>/jobs`."""
    root = os.environ.get("ZLT_JOBS_ROOT")
    return Path(root).expanduser().resolve() if root else home / "jobs"


def job_dir(home: Path, job_id: str) -> Path:
    return jobs_dir(home) / job_id


def cache_dir(home: Path) -> Path:
    return home / "cache"


def default_registry_dir(home: Path) -> Path:
    """The artifact registry: `ZLT_REGISTRY_ROOT` (shared by every host) or `<ZLT_HOME>/artifacts/lora`."""
    root = os.environ.get("ZLT_REGISTRY_ROOT")
    return Path(root).expanduser().resolve() if root else home / "artifacts" / "lora"


def uploads_dir(home: Path) -> Path:
    """Datasets uploaded through the API: beside the job folders when those live on a shared root."""
    return jobs_dir(home) / "_uploads" if os.environ.get("ZLT_JOBS_ROOT") else home / "serve" / "uploads"


def db_path(home: Path) -> Path:
    return home / "zlt.db"


def new_job_id(now: float | None = None) -> str:
    """Sortable by creation time, readable, and unique enough for concurrent submits."""
    t = time.gmtime(now if now is not None else time.time())
    return time.strftime("%Y%m%d-%H%M%S", t) + "-" + secrets.token_hex(3)


def data_dir(name: str) -> Path:
    """Bundled data (templates, profiles, vendor): repo root when editable, zlt/_data when installed."""
    installed = PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    return PACKAGE_DIR.parent / name
