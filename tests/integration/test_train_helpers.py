"""Helpers (no tests) shared by the `zlt train` integration tests: a small dataset, a spec, the stand-in trainers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
FAKE_AITOOLKIT = REPO / "tests" / "fixtures" / "fake_aitoolkit"
FAKE_MUSUBI = REPO / "tests" / "fixtures" / "fake_musubi"


def make_dataset(folder: Path, n: int = 3) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (256, 256), (40 * i, 120, 200)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a watercolor painting {i}")
    return folder


def write_spec(tmp: Path, backend: str = "ai-toolkit", steps: int = 20, every: int = 5, **extra) -> Path:
    make_dataset(tmp / "ds")
    spec = {
        "name": "wc",
        "dataset": {"path": "ds", "resolution": 512},
        "training": {"backend": backend, "max_steps": steps, "warmup_steps": 0},
        "output": {"save": {"every": every, "keep": 2}},
    }
    if backend == "musubi":
        spec["model"] = {"base": {"training_adapter": str(write_tiny_adapter(tmp / "adapter.safetensors"))}}
    for section, values in extra.items():
        spec.setdefault(section, {}).update(values)
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_tiny_adapter(path: Path) -> Path:
    """A turbo-adapter stand-in in ai-toolkit's key format (`diffusion_model.<module>.lora_A/lora_B.weight`)."""
    import numpy as np

    from zlt.lora.safetensors_io import RawTensor, write_file

    tensors = {}
    for i in range(2):
        for mod in ("attention.to_q", "attention.to_k", "feed_forward.w1"):
            base = f"diffusion_model.layers.{i}.{mod}"
            tensors[f"{base}.lora_A.weight"] = RawTensor.from_float32(np.full((2, 8), 0.01, np.float32), "F32")
            tensors[f"{base}.lora_B.weight"] = RawTensor.from_float32(np.full((8, 2), 0.02, np.float32), "F32")
    write_file(path, tensors)
    return path


def train_argv(spec: Path, workdir: Path, *extra: str, backend: str = "ai-toolkit") -> list[str]:
    flag = {"ai-toolkit": ["--ai-toolkit", str(FAKE_AITOOLKIT)], "musubi": ["--musubi", str(FAKE_MUSUBI)]}.get(backend, [])
    return [sys.executable, "-m", "zlt", "train", str(spec), "--skip-preflight", "--json", "--workdir", str(workdir),
            *flag, *extra]


def run_train(spec: Path, workdir: Path, *extra: str, backend: str = "ai-toolkit", env: dict | None = None,
              timeout: float = 120):
    proc = subprocess.run(train_argv(spec, workdir, *extra, backend=backend), capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    return proc, ndjson(proc.stdout)


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e.get("type") == kind]


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
