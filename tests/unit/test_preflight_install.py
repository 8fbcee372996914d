"""Finding trainer installs: checkout precedence, entry scripts, the trainer's Python, commit vs vendor pin,
and the user config file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from zlt.config import load_user_config
from zlt.core.errors import BadInputError
from zlt.preflight.install import git_commit, locate_trainer, probe_python, vendor_pins


def fake_python(folder: Path, modules: dict[str, str], errors: dict[str, str] | None = None,
                cuda: bool | None = True) -> Path:
    """A stand-in interpreter that answers zlt's import probe like a trainer venv would."""
    folder.mkdir(parents=True, exist_ok=True)
    answer = {"python": "3.11.9", "modules": modules, "errors": errors or {}, "cuda": cuda}
    script = folder / "python"
    script.write_text(f"#!/bin/sh\necho 'ZLT_PROBE {json.dumps(answer)}'\n")
    script.chmod(0o755)
    return script


def fake_git(root: Path, commit: str, *, packed: bool = False) -> None:
    git = root / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    if packed:
        (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{commit} refs/heads/main\n")
    else:
        (git / "refs" / "heads" / "main").write_text(commit + "\n")


def ai_toolkit_checkout(root: Path, commit: str | None = None) -> Path:
    (root / "toolkit").mkdir(parents=True)
    (root / "extensions_built_in" / "diffusion_models" / "z_image").mkdir(parents=True)
    (root / "run.py").write_text("print('ai-toolkit')\n")
    if commit:
        fake_git(root, commit)
    return root


def musubi_checkout(root: Path) -> Path:
    scripts = root / "src" / "musubi_tuner"
    scripts.mkdir(parents=True)
    for name in ("zimage_cache_latents", "zimage_cache_text_encoder_outputs", "zimage_train_network"):
        (scripts / f"{name}.py").write_text("")
    return root


PIN = vendor_pins()["ai-toolkit"].commit


def test_vendor_pins_name_repo_commit_and_entry():
    pins = vendor_pins()
    assert set(pins) == {"ai-toolkit", "musubi"}
    assert pins["ai-toolkit"].entry == "run.py" and len(pins["ai-toolkit"].commit) == 40
    assert pins["musubi"].entry == "src/musubi_tuner/zimage_train_network.py"


def test_missing_checkout_says_how_to_configure_it():
    inst = locate_trainer("ai-toolkit", check_python=False)
    assert not inst.ok and inst.root is None
    assert inst.problems == ["no ai-toolkit checkout configured"]
    assert "--ai-toolkit PATH" in inst.fix and "ZLT_AI_TOOLKIT" in inst.fix and "config.toml" in inst.fix


def test_checkout_that_does_not_exist(tmp_path: Path):
    inst = locate_trainer("ai-toolkit", str(tmp_path / "nope"), check_python=False)
    assert not inst.ok and "does not exist" in inst.problems[0]


def test_ai_toolkit_at_the_pinned_commit_with_a_working_python(tmp_path: Path):
    root = ai_toolkit_checkout(tmp_path / "ai-toolkit", PIN)
    fake_python(root / "venv" / "bin", {"torch": "2.6.0+cu124"})
    inst = locate_trainer("ai-toolkit", str(root))
    assert inst.ok, inst.problems
    assert inst.python == str(root / "venv" / "bin" / "python") and inst.python_source == "<checkout>/venv/bin/python"
    assert inst.entry == root / "run.py" and inst.commit == PIN and inst.commit_matches_pin
    assert inst.versions["torch"] == "2.6.0+cu124" and inst.cuda is True and inst.warnings == []


def test_another_commit_is_a_warning_not_a_problem(tmp_path: Path):
    root = ai_toolkit_checkout(tmp_path / "ai-toolkit", "a" * 40)
    fake_python(root / ".venv" / "bin", {"torch": "2.6.0"})
    inst = locate_trainer("ai-toolkit", str(root))
    assert inst.ok and inst.commit_matches_pin is False
    assert "aaaaaaaaaa" in inst.warnings[0] and PIN[:10] in inst.warnings[0]


def test_python_that_cannot_import_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = ai_toolkit_checkout(tmp_path / "ai-toolkit")
    py = fake_python(tmp_path / "env", {}, {"torch": "ModuleNotFoundError: No module named 'torch'"})
    monkeypatch.setenv("ZLT_AI_TOOLKIT_PYTHON", str(py))
    inst = locate_trainer("ai-toolkit", str(root))
    assert not inst.ok and inst.python_source == "$ZLT_AI_TOOLKIT_PYTHON"
    assert "cannot import torch" in inst.problems[0] and "requirements" in inst.fix


def test_old_checkout_without_z_image(tmp_path: Path):
    root = tmp_path / "ai-toolkit"
    (root / "toolkit").mkdir(parents=True)
    (root / "run.py").write_text("")
    fake_git(root, "b" * 40)
    inst = locate_trainer("ai-toolkit", str(root), check_python=False)
    assert not inst.ok and "extensions_built_in/diffusion_models/z_image" in inst.problems[0]
    assert inst.fix.startswith("git pull")


def test_precedence_flag_env_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zlt_home: Path):
    a, b, c = (ai_toolkit_checkout(tmp_path / n) for n in ("flag", "env", "cfg"))
    (zlt_home / "config.toml").write_text(f'ai_toolkit = "{c}"\nai_toolkit_python = "{sys.executable}"\n')
    assert locate_trainer("ai-toolkit", check_python=False).root == c
    assert locate_trainer("ai-toolkit", check_python=False).python == sys.executable
    monkeypatch.setenv("ZLT_AI_TOOLKIT", str(b))
    inst = locate_trainer("ai-toolkit", check_python=False)
    assert inst.root == b and inst.source == "$ZLT_AI_TOOLKIT"
    inst = locate_trainer("ai-toolkit", str(a), check_python=False)
    assert inst.root == a and inst.source == "--ai-toolkit"


def test_musubi_needs_its_scripts_and_accelerate(tmp_path: Path):
    root = musubi_checkout(tmp_path / "musubi")
    fake_python(root / ".venv" / "bin", {"torch": "2.6.0", "musubi_tuner": "?"},
                {"accelerate": "ModuleNotFoundError: No module named 'accelerate'"})
    inst = locate_trainer("musubi", str(root))
    assert not inst.ok and "cannot import accelerate" in inst.problems[0]
    (root / "src" / "musubi_tuner" / "zimage_train_network.py").unlink()
    inst = locate_trainer("musubi", str(root), check_python=False)
    assert not inst.ok and "zimage_train_network.py" in inst.problems[0]


def test_musubi_ready(tmp_path: Path):
    root = musubi_checkout(tmp_path / "musubi")
    fake_python(root / ".venv" / "bin", {"torch": "2.6.0", "accelerate": "1.6.0", "musubi_tuner": "?"})
    inst = locate_trainer("musubi", str(root))
    assert inst.ok and inst.versions["accelerate"] == "1.6.0"
    assert inst.entry == root / "src" / "musubi_tuner" / "zimage_train_network.py"
    assert "no .git" in inst.warnings[0]


def test_builtin_trainer_uses_this_python_without_importing_torch():
    before = "torch" in sys.modules
    inst = locate_trainer("lightning")
    assert inst.python == sys.executable and inst.root is None
    assert inst.ok == all(m in inst.versions for m in ("torch", "diffusers", "peft", "lightning_fabric"))
    assert ("torch" in sys.modules) == before


def test_probe_python_real_interpreter():
    answer = probe_python(sys.executable, ["json", "no_such_module_zlt"])
    assert answer["python"].startswith(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert "json" in answer["modules"] and "no_such_module_zlt" in answer["errors"]


def test_probe_python_missing_interpreter(tmp_path: Path):
    assert "does not exist" in probe_python(str(tmp_path / "python"), ["torch"])["error"]


def test_git_commit_loose_packed_detached_and_worktree(tmp_path: Path):
    loose, packed, detached = tmp_path / "loose", tmp_path / "packed", tmp_path / "detached"
    fake_git(loose, "1" * 40)
    fake_git(packed, "2" * 40, packed=True)
    (detached / ".git").mkdir(parents=True)
    (detached / ".git" / "HEAD").write_text("3" * 40 + "\n")
    assert git_commit(loose) == "1" * 40 and git_commit(packed) == "2" * 40 and git_commit(detached) == "3" * 40
    wt = tmp_path / "wt"
    meta = loose / ".git" / "worktrees" / "wt"
    meta.mkdir(parents=True)
    (meta / "HEAD").write_text("ref: refs/heads/main\n")
    (meta / "commondir").write_text("../..\n")
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {meta}\n")
    assert git_commit(wt) == "1" * 40
    assert git_commit(tmp_path) is None


def test_user_config_keys_and_trainers_table(zlt_home: Path):
    cfg = zlt_home / "config.toml"
    cfg.write_text('musubi = "~/musubi"\n[trainers]\nai_toolkit = "/opt/ai-toolkit"\n')
    conf = load_user_config()
    assert conf.get("ai_toolkit") == "/opt/ai-toolkit" and conf.get("musubi") == "~/musubi"


def test_user_config_errors_name_the_file_and_key(zlt_home: Path):
    cfg = zlt_home / "config.toml"
    cfg.write_text('ai_tookit = "/opt"\n')
    with pytest.raises(BadInputError) as e:
        load_user_config()
    assert str(cfg) in e.value.message and "ai_tookit: unknown key" in e.value.message
    assert "ai_toolkit" in e.value.hint
    cfg.write_text("ai_toolkit = /opt\n")
    with pytest.raises(BadInputError, match="invalid TOML"):
        load_user_config()
