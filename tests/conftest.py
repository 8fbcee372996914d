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


# The longest tests start first (measured with --durations on an idle 2-core box, 30 s and up): with two xdist
# workers stealing work, a long test collected late would run alone at the end while the other worker idles.
LONGEST_FIRST = (
    "tests/integration/test_jobs_e2e.py::test_fifty_concurrent_submits",
    "tests/integration/test_retrain_cli.py::test_retrain_with_the_builtin_trainer",
    "tests/integration/test_serve_schemathesis.py::",
    "tests/integration/test_jobs_multihost.py::test_thirty_jobs",
    "tests/integration/test_trainer_e2e.py::",
    "tests/integration/test_train_lightning.py::test_tiny_model_on_cpu",
    "tests/integration/test_trainer_ddp.py::",
    "tests/integration/test_serve_api.py::",
    "tests/integration/test_retrain_cli.py::",
    "tests/unit/test_artifacts_retrain_trainer.py::",
    "tests/browser/",
)


def _rank(item: pytest.Item) -> int:
    return next((i for i, p in enumerate(LONGEST_FIRST) if item.nodeid.startswith(p)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the rest keeps its order
