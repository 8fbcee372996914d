"""Issue 13 items 4-9 and 12: what a first-time user reads from the CLI is true, printed once, and not cut."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.test_train_helpers import make_dataset


def test_the_model_download_fix_names_a_command_the_venv_has(tmp_path: Path):
    from zlt.preflight.models import _not_cached

    check = _not_cached("base model", "Tongyi-MAI/Z-Image-Turbo", tmp_path, 19.0)
    command = re.search(r"(\S+) download Tongyi-MAI/Z-Image-Turbo", check.fix).group(1)
    assert (Path(sys.executable).parent / command).exists(), f"{command} is not installed beside {sys.executable}"


def test_preflight_hints_name_the_command_that_has_assume_gpu():
    from zlt.preflight.checks import run_preflight
    from zlt.preflight.gpu import StaticProbe
    from zlt.spec import load_spec_data

    spec = load_spec_data({"dataset": {"path": "/tmp"}}, source="t").spec
    report = run_preflight(spec, probe=StaticProbe([]), check_data=False, check_python=False)
    fixes = [c.fix for c in report.checks if "--assume-gpu" in c.fix]
    assert fixes and all("zlt preflight SPEC --assume-gpu" in f for f in fixes)


def test_a_max_steps_error_gives_no_hint_computed_from_it(tmp_path: Path, zlt):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"dataset": {"path": "."}, "training": {"max_steps": -3}}))
    proc = zlt("validate", str(spec))
    # the spec's own path (pytest's tmp folders are numbered, e.g. pytest-363) is not a hint computed from -3
    told = proc.stderr.replace(str(spec), "SPEC").replace("max_steps: -3", "").replace("{-3}", "")
    assert proc.returncode == 2 and "-3" not in told
    assert "use at most" not in proc.stderr


def test_logs_of_a_job_that_failed_before_starting_says_so(zlt_home: Path, zlt):
    from tests.unit.jobs_fakes import new_job
    from zlt.jobs.states import JobStatus
    from zlt.jobs.store import JobStore

    store = JobStore(zlt_home)
    store.create(new_job("early", job_dir=str(zlt_home / "jobs" / "early")))
    claim = store.claim("w", [0])
    store.transition("early", JobStatus.FAILED, token=claim.token, error_cause="dataset",
                     error_message="dataset.path: no images")
    store.close()
    proc = zlt("logs", "early")
    assert "appears when" not in proc.stderr
    assert "failed before the trainer started: dataset.path: no images" in proc.stderr and "--events" in proc.stderr


def test_a_file_as_zlt_home_is_exit_3_with_the_fix_and_doctor_reports_it(tmp_path: Path, zlt):
    bad = tmp_path / "home"
    bad.write_text("oops")
    env = {"ZLT_HOME": str(bad)}
    for args in (["jobs"], ["status", "x"], ["artifacts", "list"]):
        proc = zlt(*args, env=env)
        assert proc.returncode == 3, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "is a file, not a folder" in proc.stderr
    proc = zlt("doctor", "--json", env=env)
    report = json.loads(proc.stdout)
    assert proc.returncode == 3 and not report["ok"]
    home = [c for c in report["checks"] if c["name"] == "home"][0]
    assert home["status"] == "fail" and "ZLT_HOME" in home["fix"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_zlt_home_is_exit_3(tmp_path: Path, zlt):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    proc = zlt("jobs", env={"ZLT_HOME": str(ro)})
    assert proc.returncode == 3 and "not writable" in proc.stderr


def test_json_is_a_flag_in_help_and_long_options_are_not_cut(zlt):
    proc = zlt("serve", "--help", env={"COLUMNS": "80"})
    assert proc.returncode == 0
    assert "<bool>" not in proc.stdout
    assert "--webhook-secret-file" in proc.stdout and "--json " in proc.stdout
    assert not any(ch in proc.stdout for ch in "╭│…")


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the [train] extra")
def test_a_piped_tiny_run_prints_each_message_once_unwrapped_with_the_average_rate(tmp_path: Path, zlt):
    from PIL import Image

    make_dataset(tmp_path / "ds", n=2)
    for p in (tmp_path / "ds").glob("*.png"):
        Image.open(p).resize((32, 32)).save(p)
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "job"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
        "dataset": {"path": "ds", "resolution": 32}, "training": {"max_steps": 2, "warmup_steps": 0},
        "output": {"save": {"every": 1, "keep": 1}},
    }))
    proc = zlt("train", str(spec), "--workdir", str(deep))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("tiny random test model; its LoRA is a smoke test") == 1
    assert f"{deep}/output/tiny.safetensors" in out  # a path is never wrapped mid-name
    assert re.search(r"2/2 .*avg \d", out), out[-1500:]
    assert "load_lora_weights(" in out and "LoraLoaderModelOnly" in out  # item 11


def test_the_tiny_model_on_a_non_lightning_backend_is_refused_everywhere(tmp_path: Path, zlt):
    (tmp_path / "ds").mkdir()
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
                                    "dataset": {"path": "ds", "resolution": 32}, "training": {"max_steps": 4}}))
    for args in (["render", str(spec), "-b", "ai-toolkit"], ["render", str(spec), "-b", "musubi", "--json"],
                 ["preflight", str(spec), "-b", "ai-toolkit"], ["validate", str(spec), "--set",
                                                                 "training.backend=ai-toolkit"]):
        proc = zlt(*args)
        assert proc.returncode == 2, (args, proc.stdout[-500:], proc.stderr[-500:])
        assert "cannot train the tiny test model" in proc.stdout + proc.stderr


def test_the_http_render_applies_the_same_rule(tmp_path: Path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from zlt.serve.app import create_app

    (tmp_path / "ds").mkdir()
    token = "t" * 32
    with TestClient(create_app(tmp_path / "home", [tmp_path], token, webhook_secret=None)) as c:
        r = c.post("/v1/specs/render?backend=ai-toolkit", headers={"Authorization": f"Bearer {token}"},
                   json={"model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
                         "dataset": {"path": "ds", "resolution": 32}, "training": {"max_steps": 4}})
    assert r.status_code == 422 and "training.backend" in r.text


def test_after_training_the_user_is_told_how_to_use_the_lora():
    from zlt.cli.use import usage_lines

    text = "\n".join(usage_lines("/r/a_v0", "a_v0", trigger="<zs>", key_format="diffusers"))
    assert "ZImagePipeline.from_pretrained('Tongyi-MAI/Z-Image-Turbo'" in text
    assert "load_lora_weights('/r/a_v0/lora.safetensors'" in text and "'<zs> a lighthouse" in text
    assert "zlt artifacts export a_v0 --format comfyui -o ComfyUI/models/loras/" in text and "LoraLoaderModelOnly" in text
    assert (Path(__file__).resolve().parents[2] / "docs" / "use.md").is_file()
    comfy = "\n".join(usage_lines("/r/a_v0", "a_v0", trigger=None, key_format="comfyui"))
    assert "copy /r/a_v0/lora.safetensors into ComfyUI/models/loras/" in comfy and "tiny" not in comfy
    tiny = "\n".join(usage_lines("/r/a_v0", "a_v0", trigger=None, key_format="diffusers", tiny=True))
    assert "fits only that model" in tiny
    assert "num_inference_steps=9, guidance_scale=0.0)" in text  # Turbo's
    base = "\n".join(usage_lines("/r/a_v0", "a_v0", trigger=None, key_format="diffusers", base_model="Tongyi-MAI/Z-Image",
                                 steps=30, guidance=4.0))
    assert "from_pretrained('Tongyi-MAI/Z-Image'" in base and "num_inference_steps=30, guidance_scale=4.0)" in base


def test_a_preflight_failure_is_printed_once(tmp_path: Path, zlt):
    make_dataset(tmp_path / "ds", n=2)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"dataset": {"path": "ds", "resolution": 512}, "training": {"max_steps": 300}}))
    proc = zlt("train", str(spec), "--workdir", str(tmp_path / "job"))  # HF_HUB_OFFLINE=1 and no model: refused
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stderr.count("preflight failed") == 1, proc.stderr
