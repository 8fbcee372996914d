"""The spec commands through the real CLI, as a user or an agent runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tomllib
import yaml

from tests.conftest import run_zlt
from tests.unit.test_spec import V0


def test_init_validate_render_round_trip(tmp_path):
    r = run_zlt("init", str(tmp_path), "--preset", "character")
    assert r.returncode == 0, r.stderr
    spec = tmp_path / "spec.yaml"
    assert yaml.safe_load(spec.read_text())["preset"] == "character"
    _images(tmp_path / "dataset")  # what `zlt init` asks for next: validate checks the folder as submit does
    r = run_zlt("validate", str(spec), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["spec"]["model"]["lora"]["rank"] == 64
    r = run_zlt("init", str(tmp_path))
    assert r.returncode == 2 and "--force" in r.stderr


def test_render_json_object_shape(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(V0))
    r = run_zlt("render", str(tmp_path / "spec.yaml"), "--backend", "musubi", "--profile", "24gb", "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["backend"] == "musubi" and obj["profile"] == "24gb"
    assert list(obj["files"]) == ["musubi_dataset.toml"]
    tomllib.loads(obj["files"]["musubi_dataset.toml"])
    # convert the turbo adapter to musubi keys, cache latents, cache text-encoder outputs, train
    assert len(obj["argv"]) == 4 and all(isinstance(a, list) for a in obj["argv"])


def test_render_out_writes_files_and_argv(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(V0))
    out = tmp_path / "out"
    r = run_zlt("render", str(tmp_path / "spec.yaml"), "-b", "ai-toolkit", "--vram-gb", "24", "--out", str(out))
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load((out / "ai_toolkit.yaml").read_text())
    assert doc["config"]["process"][0]["model"]["arch"] == "zimage"
    assert json.loads((out / "argv.json").read_text())[0][3] == "run.py"


def test_render_explain_names_sources(tmp_path):
    (tmp_path / "spec.yaml").write_text("preset: character\nmodel:\n  lora:\n    rank: 32\n")
    r = run_zlt("render", str(tmp_path / "spec.yaml"), "-b", "ai-toolkit", "--profile", "24gb", "--explain",
                "--set", "training.max_steps=3000")
    assert r.returncode == 0, r.stderr
    assert "preset:character" in r.stderr and "--set" in r.stderr and "spec" in r.stderr


def test_bad_spec_exit_2_all_errors_no_traceback(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: BAD NAME\nmodel:\n  lora:\n    rank: 999\ntraining:\n  max_stepz: 3\n")
    r = run_zlt("validate", str(tmp_path / "bad.yaml"))
    assert r.returncode == 2
    assert "name:" in r.stderr and "model.lora.rank:" in r.stderr and "training.max_stepz:" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    r = run_zlt("validate", str(tmp_path / "bad.yaml"), "--json")
    assert r.returncode == 2 and len(json.loads(r.stdout)["errors"]) == 3


def test_refused_fit_exit_2_with_hint(tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(V0))
    r = run_zlt("render", str(tmp_path / "s.yaml"), "-b", "ai-toolkit", "--profile", "16gb",
                "--set", "model.lora.rank=64", "--set", "model.base.quantize=none")
    assert r.returncode == 2 and "hint:" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_and_bad_set(tmp_path):
    r = run_zlt("render", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml" in r.stderr
    (tmp_path / "s.yaml").write_text("{}")
    r = run_zlt("validate", str(tmp_path / "s.yaml"), "--set", "novalue")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr


def test_schema_is_json_schema():
    r = run_zlt("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert schema["additionalProperties"] is False and "training" in schema["properties"]


def test_cli_import_pulls_no_heavy_modules():
    code = ("import sys, zlt.cli.app; heavy = [m for m in ('torch', 'diffusers', 'pynvml', 'peft', 'transformers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def _images(folder):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32)).save(folder / "a.png")


DOORS = [["validate"], ["render"], ["submit", "--no-worker"], ["train"]]


@pytest.mark.parametrize("case", ["missing_dataset", "unknown_backend"])
def test_the_four_doors_give_one_answer(tmp_path, zlt_home, case):
    """validate, render, submit and train: the same exit code and the same error line, and no job left behind."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "doors", "model": {"base": {"name": "zlt/tiny-zimage"}},
                                    "dataset": {"path": "ds", "resolution": 64}, "training": {"max_steps": 2, "warmup_steps": 0},
                                    "output": {"save": {"every": 1}}}))
    extra: list[str] = []
    if case == "unknown_backend":
        _images(tmp_path / "ds")
        extra = ["--backend", "lightening"]
    answers = set()
    for door in DOORS:
        r = run_zlt(door[0], str(spec), *door[1:], *extra)
        lines = [x for x in r.stderr.splitlines() if x.startswith("  ")]
        answers.add((r.returncode, tuple(lines)))
        assert "Traceback" not in r.stderr
    (code, lines), = answers
    assert code == 2 and len(lines) == 1
    field = "dataset.path" if case == "missing_dataset" else "training.backend"
    assert lines[0].startswith(f"  {field}: ")
    if case == "unknown_backend":
        assert all(b in lines[0] for b in ("ai-toolkit", "musubi", "lightning"))
    r = run_zlt("jobs", "--json")
    assert json.loads(r.stdout) == []
