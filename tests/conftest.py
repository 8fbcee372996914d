"""Every test gets its own ZLT_HOME and user config, and never reaches a model hub."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def zlt_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("zlt_home")
    monkeypatch.setenv("ZLT_HOME", str(home))
    monkeypatch.setenv("ZLT_CONFIG", str(home / "config.toml"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ZLT_AI_TOOLKIT", raising=False)
    monkeypatch.delenv("ZLT_MUSUBI", raising=False)
    return home


def run_zlt(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600, input: str | None = None):
    """Run the real CLI as a subprocess (as a user or an agent would)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "zlt", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=timeout, input=input,
    )


@pytest.fixture
def zlt():
    return run_zlt

