"""Is ZLT_HOME usable? A file where the folder should be, or a folder zlt cannot write, is an environment
problem with a plain fix (exit 3), never a traceback. Standard library only: every command checks it."""

from __future__ import annotations

import os
from pathlib import Path

from zlt.core.errors import EnvNotReadyError


def home_problem(home: Path, *, create: bool = True) -> tuple[str, str] | None:
    """(what is wrong, how to fix it), or None when `home` is a writable folder (created if missing)."""
    where = "ZLT_HOME" if os.environ.get("ZLT_HOME") else "the state folder"
    fix_env = "point ZLT_HOME (or --home) at a folder you can write, or unset it to use ~/.local/share/zlt"
    if home.exists() and not home.is_dir():
        return f"{where} {home} is a file, not a folder", f"{fix_env}; or move the file away"
    if not home.exists():
        if not create:
            return None
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return f"{where} {home} cannot be created ({e.strerror or e})", fix_env
        return None
    if not os.access(home, os.W_OK | os.X_OK):
        return f"{where} {home} is not writable by this user", f"{fix_env}; or fix its permissions (chmod u+rwx {home})"
    return None


def ensure_home(home: Path) -> Path:
    """`home`, created if missing; EnvNotReadyError (exit 3) with the fix when it cannot hold zlt's state."""
    problem = home_problem(home)
    if problem is not None:
        raise EnvNotReadyError(problem[0], hint=problem[1])
    return home
