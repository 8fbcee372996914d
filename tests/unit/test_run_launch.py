import sys

import pytest

from tests.integration.test_train_helpers import FAKE_AITOOLKIT
from zlt.core.errors import EnvNotReadyError
from zlt.preflight.install import locate
from zlt.run.launch import child_env


def test_checkout_from_flag_env_or_nowhere(tmp_path, monkeypatch):
    loc = locate("ai-toolkit", str(FAKE_AITOOLKIT))
    assert loc.root == FAKE_AITOOLKIT and loc.python == sys.executable and loc.source == "--ai-toolkit"
    monkeypatch.setenv("ZLT_AI_TOOLKIT", str(FAKE_AITOOLKIT))
    monkeypatch.setenv("ZLT_AI_TOOLKIT_PYTHON", "/opt/aitk/venv/bin/python")
    loc = locate("ai-toolkit")
    assert loc.python == "/opt/aitk/venv/bin/python" and "ZLT_AI_TOOLKIT" in loc.source
    monkeypatch.delenv("ZLT_AI_TOOLKIT")
    with pytest.raises(EnvNotReadyError) as e:
        locate("ai-toolkit")
    assert "--ai-toolkit" in e.value.hint


def test_checkout_venv_python_is_preferred(tmp_path):
    root = tmp_path / "aitk"
    for rel in ("run.py", "toolkit/__init__.py", "extensions_built_in/diffusion_models/z_image/__init__.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text("")
    assert locate("ai-toolkit", str(root)).python == str(root / ".venv" / "bin" / "python")
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").write_text("")
    assert locate("ai-toolkit", str(root)).python == str(root / "venv" / "bin" / "python")


def test_not_a_checkout(tmp_path):
    with pytest.raises(EnvNotReadyError):
        locate("musubi", str(tmp_path))


def test_builtin_trainer_is_this_python():
    assert locate("lightning").python == sys.executable


def test_child_env():
    env = child_env([0, 2], base={"PATH": "/bin", "PYTHONIOENCODING": "latin-1"})
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "latin-1", "CUDA_VISIBLE_DEVICES": "0,2"}
    assert "CUDA_VISIBLE_DEVICES" not in child_env(None, base={})
