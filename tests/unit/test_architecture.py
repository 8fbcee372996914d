"""The shape of the code, measured (issue 23): layers kept by import-linter, no import cycle, few imports inside
functions and each saying why, no module over 400 lines, no backend branch outside the backend registry.

The figures are printed (`pytest -s tests/unit/test_architecture.py`, or `python bench/architecture.py`)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_INNER_IMPORTS = 60


def _measure() -> dict:
    spec = importlib.util.spec_from_file_location("zlt_architecture", ROOT / "bench" / "architecture.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod.measure()


@pytest.fixture(scope="module")
def figures() -> dict:
    m = _measure()
    print(f"\nimport cycles {len(m['cycles'])}; imports inside functions {m['imports_inside_functions']}; "
          f"modules over 400 lines {len(m['modules_over_400_lines'])}; "
          f"backend branches outside zlt/backends {len(m['backend_branches_outside_registry'])}")
    return m


def test_import_linter_contracts_pass():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    print(out.stdout[-3000:])
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_no_import_cycles(figures: dict):
    assert figures["cycles"] == []


def test_imports_inside_functions_are_few_and_say_why(figures: dict):
    assert figures["imports_inside_functions"] <= MAX_INNER_IMPORTS
    assert figures["imports_inside_functions_without_reason"] == []


def test_no_module_over_400_lines(figures: dict):
    assert figures["modules_over_400_lines"] == []


def test_no_backend_branch_outside_the_registry(figures: dict):
    assert figures["backend_branches_outside_registry"] == []


def test_the_trainer_child_loads_no_spec_runner_or_renderer():
    """What `python -m zlt.trainer TRAINER_JSON` imports before it trains: zlt.core and zlt.trainer only."""
    code = ("import sys, zlt.trainer.__main__, zlt.trainer.loop, zlt.trainer.config; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('zlt.'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split()
    print(f"\nthe trainer child loads {len(loaded)} zlt modules")
    assert loaded and all(m.startswith(("zlt.core", "zlt.trainer")) for m in loaded), loaded
