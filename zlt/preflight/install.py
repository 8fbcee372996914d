"""Where each trainer is installed, and whether it can run: checkout, entry scripts, its Python, its commit.

ai-toolkit: `explicit` > $ZLT_AI_TOOLKIT > config `ai_toolkit`; musubi likewise with ZLT_MUSUBI / `musubi`.
The Python: $ZLT_<NAME>_PYTHON > config `<name>_python` > <root>/venv/bin/python > <root>/.venv/bin/python >
the Python running zlt. The built-in trainer (`lightning`) is this Python with the `[train]` extra.

The trainer's Python is asked what it can import in a subprocess (argv, no shell), so zlt itself never
imports torch here. `vendor/*.toml` pins the upstream commit zlt was written against.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt import backends
from zlt.backends.base import InstallFacts
from zlt.config import load_user_config, tomllib
from zlt.core.errors import BadInputError, EnvNotReadyError, ZltError
from zlt.core.paths import data_dir, user_config_path
from zlt.run.launch import TrainerLocation

_TRAIN_MODULES = ("torch", "diffusers", "peft", "transformers", "lightning_fabric")
PROBE_TIMEOUT_S = 180.0  # a cold `import torch` on a network filesystem can take a minute

# Runs inside the trainer's Python: report its version, what imports, and whether CUDA works.
_PROBE = r"""
import importlib, json, sys
out = {"python": "%d.%d.%d" % sys.version_info[:3], "modules": {}, "errors": {}, "cuda": None}
for name in sys.argv[1:]:
    try:
        mod = importlib.import_module(name)
        out["modules"][name] = str(getattr(mod, "__version__", "") or "?")
    except Exception as e:
        out["errors"][name] = ("%s: %s" % (type(e).__name__, e))[:300]
if "torch" in out["modules"]:
    import torch
    try:
        out["cuda"] = bool(torch.cuda.is_available())
        out["torch_cuda"] = torch.version.cuda
    except Exception as e:
        out["errors"]["torch.cuda"] = str(e)[:300]
print("ZLT_PROBE " + json.dumps(out))
"""


@dataclass
class VendorPin:
    backend: str
    repo: str
    commit: str
    entry: str
    required_files: list[str] = field(default_factory=list)
    python_modules: list[str] = field(default_factory=list)
    commit_date: str = ""
    install: str = ""


@dataclass
class TrainerInstall:
    backend: str
    root: Path | None
    python: str
    commit: str | None
    entry: Path | None
    ok: bool
    problems: list[str] = field(default_factory=list)
    fix: str = ""  # one line: what to do about the first problem
    warnings: list[str] = field(default_factory=list)
    source: str | None = None  # where the checkout came from: flag, env var or config file
    python_source: str | None = None
    pinned_commit: str | None = None
    versions: dict[str, str] = field(default_factory=dict)  # python, torch, accelerate, ...
    cuda: bool | None = None  # torch.cuda.is_available() in the trainer's Python

    @property
    def commit_matches_pin(self) -> bool | None:
        if not self.commit or not self.pinned_commit:
            return None
        return self.commit == self.pinned_commit

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "root": str(self.root) if self.root else None, "python": self.python,
                "commit": self.commit, "pinned_commit": self.pinned_commit, "commit_matches_pin": self.commit_matches_pin,
                "entry": str(self.entry) if self.entry else None, "ok": self.ok, "problems": self.problems,
                "fix": self.fix, "warnings": self.warnings, "source": self.source, "python_source": self.python_source,
                "versions": self.versions, "cuda": self.cuda}


def vendor_pins() -> dict[str, VendorPin]:
    """The supported upstream versions in vendor/*.toml, by backend."""

    pins: dict[str, VendorPin] = {}
    for path in sorted(data_dir("vendor").glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        known = {k: data[k] for k in VendorPin.__dataclass_fields__ if k in data}
        pin = VendorPin(**known)
        pins[pin.backend] = pin
    return pins


def git_commit(root: Path) -> str | None:
    """The checked-out commit, read from .git without running git (handles worktrees and packed refs)."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return None
            git = (root / text.split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return None
    return None


def _config(key: str) -> tuple[str | None, str | None]:
    """(value, where it came from) from the user config; a broken config reads as empty here (doctor says why)."""

    try:
        value = load_user_config().get(key)
    except ZltError:
        return None, None
    return (str(Path(value).expanduser()), f"{user_config_path()} ({key})") if value else (None, None)


def _find_root(facts: InstallFacts, explicit: str | None) -> tuple[Path | None, str | None]:
    if explicit:
        return Path(explicit).expanduser(), facts.flag
    env = os.environ.get(facts.env)
    if env:
        return Path(env).expanduser(), f"${facts.env}"
    value, where = _config(facts.config_key)
    return (Path(value), where) if value else (None, None)


def _find_python(facts: InstallFacts, root: Path | None) -> tuple[str, str]:
    env_name = f"{facts.env}_PYTHON"
    if os.environ.get(env_name):
        return os.environ[env_name], f"${env_name}"
    value, where = _config(f"{facts.config_key}_python")
    if value:
        return value, where or "config"
    if root is not None:
        for rel in ("venv/bin/python", ".venv/bin/python"):
            if (root / rel).exists():
                return str(root / rel), f"<checkout>/{rel}"
    return sys.executable, "the Python running zlt"


def probe_python(python: str, modules: list[str], extra_path: list[str] | None = None,
                 timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Ask `python` which of `modules` import; {'error': ...} when it cannot even run."""
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([*extra_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        proc = subprocess.run([python, "-c", _PROBE, *modules], capture_output=True, text=True, timeout=timeout,
                              env=env)
    except FileNotFoundError:
        return {"error": f"{python} does not exist"}
    except PermissionError:
        return {"error": f"{python} is not executable"}
    except subprocess.TimeoutExpired:
        return {"error": f"{python} did not answer within {timeout:.0f} s"}
    except OSError as e:
        return {"error": f"{python} cannot run ({e.strerror or e})"}
    for line in proc.stdout.splitlines():
        if line.startswith("ZLT_PROBE "):
            try:
                return json.loads(line[len("ZLT_PROBE "):])
            except json.JSONDecodeError:
                break
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return {"error": f"{python} failed: {tail[0][:200]}"}


def _apply_probe(inst: TrainerInstall, probe: dict[str, Any], needed: list[str], install_hint: str) -> None:
    if "error" in probe:
        inst.problems.append(probe["error"])
        facts = backends.get(inst.backend).install
        inst.fix = inst.fix or f"point ${facts.env if facts else 'ZLT'}_PYTHON at the trainer's environment"
        return
    inst.versions["python"] = probe.get("python", "?")
    inst.versions.update(probe.get("modules", {}))
    inst.cuda = probe.get("cuda")
    if probe.get("torch_cuda"):
        inst.versions["torch_cuda"] = str(probe["torch_cuda"])
    missing = [m for m in needed if m in probe.get("errors", {})]
    if missing:
        first = probe["errors"][missing[0]]
        inst.problems.append(f"{inst.python} cannot import {', '.join(missing)} ({first})")
        inst.fix = inst.fix or install_hint


def locate_trainer(backend: str, explicit: str | None = None, *, check_python: bool = True) -> TrainerInstall:
    """Find `backend`'s install and say whether it can run. Never raises for a missing install."""
    try:
        facts = backends.get(backend).install
    except BadInputError as e:
        return TrainerInstall(backend, None, sys.executable, None, None, False, [e.message], e.hint)
    if facts is None:
        return _locate_builtin(backend)
    pin = vendor_pins().get(backend)
    root, source = _find_root(facts, explicit)
    python, python_source = _find_python(facts, root)
    inst = TrainerInstall(backend, root, python, None, None, False, source=source, python_source=python_source,
                          pinned_commit=pin.commit if pin else None)
    if root is None:
        inst.problems.append(f"no {backend} checkout configured")
        inst.fix = (f"pass {facts.flag} PATH, set {facts.env}, or add {facts.config_key} = \"/path\" to "
                    f"{user_config_path()}" + (f" (install: {pin.install})" if pin and pin.install else ""))
        return inst
    root = root.resolve()
    inst.root = root
    if not root.is_dir():
        inst.problems.append(f"{root} (from {source}) does not exist")
        inst.fix = f"clone {pin.repo if pin else backend} there, or point {facts.flag} at your checkout"
        return inst
    required = pin.required_files if pin else []
    missing = [rel for rel in required if not (root / rel).exists()]
    if missing:
        inst.problems.append(f"{root} is not a usable {backend} checkout: missing {', '.join(missing)}")
        inst.fix = (f"git pull in {root} (Z-Image support is recent)" if (root / ".git").exists() and
                    (root / (pin.entry if pin else "")).exists() else f"point {facts.flag} at the folder you cloned")
    inst.entry = root / pin.entry if pin else None
    inst.commit = git_commit(root)
    if pin and inst.commit and inst.commit != pin.commit:
        inst.warnings.append(f"checkout at {inst.commit[:10]}, zlt is tested against {pin.commit[:10]} "
                             f"({pin.commit_date}); config keys or log lines may differ")
    elif pin and not inst.commit:
        inst.warnings.append(f"cannot read the checkout's commit (no .git); zlt is tested against {pin.commit[:10]}")
    if check_python:
        modules = list(pin.python_modules) if pin else ["torch"]
        src = [str(root / facts.probe_src)] if facts.probe_src else None
        hint = f"install the trainer's requirements into {python}" + (f" ({pin.install})" if pin and pin.install else "")
        answer = probe_python(python, modules, src)
        _apply_probe(inst, answer, modules, hint)
        if facts.accelerate_cli and "accelerate" in answer.get("modules", {}):
            launcher = Path(python).parent / "accelerate"
            inst.versions["accelerate_cli"] = str(launcher) if launcher.exists() else f"{python} -m accelerate"
    inst.ok = not inst.problems
    return inst


def _locate_builtin(backend: str) -> TrainerInstall:
    """The built-in trainer: this Python with the [train] extra. find_spec only: torch is not imported."""
    inst = TrainerInstall(backend, None, sys.executable, None, None, False, source="built in",
                          python_source="the Python running zlt")
    inst.versions["python"] = ".".join(map(str, sys.version_info[:3]))
    missing = []
    for name in _TRAIN_MODULES:
        if importlib.util.find_spec(name) is None:
            missing.append(name)
            continue
        dist = {"lightning_fabric": "lightning-fabric"}.get(name, name)
        try:
            inst.versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            inst.versions[name] = "?"
    if missing:
        inst.problems.append(f"the built-in trainer needs {', '.join(missing)} (the [train] extra)")
        inst.fix = "pip install 'zlt[train]' (with a torch build that matches your CUDA driver)"
    inst.ok = not inst.problems
    return inst


def locate(backend: str, explicit: str | None = None) -> TrainerLocation:
    """The checkout and interpreter for `backend`; raises EnvNotReadyError when there is none.
    Whether its Python can import the trainer's packages is preflight's question, not asked here."""
    if backends.get(backend).builtin:
        return TrainerLocation(backend, None, sys.executable, "built in")
    inst = locate_trainer(backend, explicit, check_python=False)
    if not inst.ok:
        raise EnvNotReadyError(f"{backend}: " + "; ".join(inst.problems), hint=inst.fix)
    return TrainerLocation(backend, inst.root, inst.python, inst.source, inst.commit)
