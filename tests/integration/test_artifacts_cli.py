"""`zlt artifacts ...` end to end, as an agent or a user runs it: real subprocesses, exit codes, --json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.artifact_jobs import make_job_dir, musubi_state, save_state
from tests.fixtures.eval_fixtures import evaluable_artifact
from zlt.artifacts import store
from zlt.lora.safetensors_io import read_header

JOB = "20260801-120000-abc123"
ART = f"{JOB}_watercolor_v0"


def _json(proc) -> dict:
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def collected(tmp_path, zlt, zlt_home):
    job = make_job_dir(tmp_path / "jobs", corrupt_steps=(500,))
    proc = zlt("artifacts", "collect", str(job), "--json")
    assert proc.returncode == 0, proc.stderr
    return _json(proc)["artifact"]


def test_collect_list_show(collected, zlt, zlt_home):
    assert collected["id"] == ART and Path(collected["path"]).is_dir()
    assert any("corrupt" in w for w in collected["warnings"])
    listed = _json(zlt("artifacts", "list", "--json"))
    assert listed["ok"] and [a["id"] for a in listed["artifacts"]] == [ART]
    shown = _json(zlt("artifacts", "show", JOB, "--json"))["artifact"]
    assert shown["id"] == ART and shown["curve"]["final_step"] == 1000
    assert {f["path"] for f in shown["files"]} >= {"lora.safetensors", "training_meta.json"}
    human = zlt("artifacts", "show", ART)
    assert human.returncode == 0 and "lora.safetensors" in human.stdout and "loss:" in human.stdout
    table = zlt("artifacts", "list")
    assert ART in table.stdout and "diffusers" in table.stdout


def test_verify_exit_codes(collected, zlt):
    ok = zlt("artifacts", "verify", ART)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:")
    spec = Path(collected["path"]) / "spec.yaml"
    spec.write_text(spec.read_text() + "# edited\n")
    bad = zlt("artifacts", "verify", ART, "--json")
    assert bad.returncode == 1
    out = _json(bad)
    assert out["ok"] is False and out["mismatches"] == [
        {"path": "spec.yaml", "problem": "changed", "expected": out["mismatches"][0]["expected"],
         "actual": out["mismatches"][0]["actual"]}
    ]
    human = zlt("artifacts", "verify", ART)
    assert human.returncode == 1 and "spec.yaml: changed" in human.stderr


def test_export(collected, zlt, tmp_path):
    out = tmp_path / "comfy" / "my.safetensors"
    proc = zlt("artifacts", "export", ART, "--format", "comfyui", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert _json(proc)["path"] == str(out.resolve()) and out.is_file()
    again = zlt("artifacts", "export", ART, "--format", "comfyui", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    bad = zlt("artifacts", "export", ART, "--format", "ckpt")
    assert bad.returncode == 2 and "unknown LoRA key format" in bad.stderr
    kohya = zlt("artifacts", "export", ART, "-f", "kohya", "--step", "250", "-o", str(tmp_path))
    assert kohya.returncode == 0 and kohya.stdout.strip().endswith(".kohya.step_000250.safetensors")


def test_rm_asks_then_deletes(collected, zlt):
    folder = Path(collected["path"])
    no = zlt("artifacts", "rm", ART, input="n\n")
    assert no.returncode == 0 and "Nothing deleted" in no.stdout and folder.is_dir()
    eof = zlt("artifacts", "rm", ART, input="")
    assert eof.returncode == 2 and "--yes" in eof.stderr and folder.is_dir()
    agent = zlt("artifacts", "rm", ART, "--json")
    assert agent.returncode == 2 and _json(agent)["hint"] == "pass --yes" and folder.is_dir()
    yes = zlt("artifacts", "rm", ART, input="y\n")
    assert yes.returncode == 0 and not folder.exists()
    assert _json(zlt("artifacts", "list", "--json"))["artifacts"] == []


def test_rm_yes_json(collected, zlt):
    proc = zlt("artifacts", "rm", ART, "--yes", "--json")
    assert proc.returncode == 0 and _json(proc) == {"ok": True, "removed": ART, "path": collected["path"]}


def test_user_errors_are_messages_not_tracebacks(collected, zlt, tmp_path):
    for args in (("show", "nope"), ("verify", "nope"), ("rm", "nope", "--yes"), ("export", "nope", "-f", "kohya")):
        proc = zlt("artifacts", *args)
        assert proc.returncode == 2, args
        assert "no artifact 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    again = zlt("artifacts", "collect", str(tmp_path / "jobs" / JOB), "--json")  # never overwritten: the next version
    assert again.returncode == 0 and _json(again)["artifact"]["id"] == f"{JOB}_watercolor_v1", again.stdout
    nojob = zlt("artifacts", "collect", str(tmp_path / "missing"), "--json")
    assert nojob.returncode == 2 and _json(nojob)["error"] == "not_found"


def _big_job(root: Path) -> Path:
    """A job whose final checkpoint is large enough (~60 MB, alpha to fold) that collection takes a while."""
    job = make_job_dir(root, fmt="musubi", alpha=1.0, steps=())
    rng = np.random.default_rng(0)
    arrays = {f"layers.{i}.attention.to_q": (rng.standard_normal((64, 3840), dtype=np.float32),
                                             rng.standard_normal((3840, 64), dtype=np.float32)) for i in range(30)}
    save_state(job / "output" / "watercolor.safetensors", musubi_state(arrays, alpha=1.0))
    return job


@pytest.mark.slow
def test_kill_during_collection_leaves_no_half_folder(tmp_path, zlt, zlt_home):
    job = _big_job(tmp_path / "jobs")
    registry = zlt_home / "artifacts" / "lora"
    proc = subprocess.Popen([sys.executable, "-m", "zlt", "artifacts", "collect", str(job)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    staging = []
    deadline = time.time() + 60
    while time.time() < deadline and not staging and proc.poll() is None:
        staging = [p for p in registry.glob(".staging-*")] if registry.is_dir() else []
        time.sleep(0.005)
    assert staging, "collection never started"
    time.sleep(0.05)
    assert proc.poll() is None, "collection finished before it could be killed; make the job bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    visible = [p.name for p in registry.iterdir() if not p.name.startswith(".")]
    assert visible == []  # no folder under the artifact's name, complete or not
    assert _json(zlt("artifacts", "list", "--json"))["artifacts"] == []
    # the next collection sweeps the dead staging folder and succeeds
    done = zlt("artifacts", "collect", str(job), "--json")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in registry.iterdir()] == [ART]
    assert zlt("artifacts", "verify", ART).returncode == 0


def test_eval_and_export_take_latest_a_style_name_and_best(tmp_path, zlt, zlt_home):
    """`zlt eval latest`, `zlt eval STYLE` and `zlt artifacts export STYLE --step best` resolve like `generate`
    (zlt.artifacts.resolve); before, they answered "no artifact"."""
    art = evaluable_artifact(tmp_path / "jobs", zlt_home)  # style 'watercolor', checkpoints 250/500/750, final 1000
    for ref in ("latest", "watercolor", "watercolor@v0", art[:20]):
        # A step it does not keep: the command got as far as the artifact's checkpoints (exit 2, no model loaded)
        r = zlt("eval", ref, "--checkpoints", "250,300", "--json")
        assert r.returncode == 2, (ref, r.stdout + r.stderr)
        assert "step 300" in json.loads(r.stdout)["message"], (ref, r.stdout)
    missing = zlt("eval", "nope", "--json")
    assert missing.returncode == 2 and "known styles: watercolor" in json.loads(missing.stdout)["message"]

    before = zlt("artifacts", "export", "watercolor", "--format", "comfyui", "--step", "best")
    assert before.returncode == 2 and f"zlt eval {art}" in before.stderr, before.stderr
    store.update_meta(zlt_home, art, {"best_step": 500})  # what `zlt eval` records
    for ref, step in (("watercolor", ["--step", "best"]), ("watercolor@best", []), ("latest@500", [])):
        out = tmp_path / f"{ref.replace('@', '_')}.safetensors"
        r = zlt("artifacts", "export", ref, "--format", "comfyui", "--out", str(out), *step, "--json")
        assert r.returncode == 0, (ref, r.stdout + r.stderr)
        assert read_header(out).metadata["zlt.exported_from"] == f"{art}/checkpoints/step_000500.safetensors"
    clash = zlt("artifacts", "export", "watercolor@250", "--format", "comfyui", "--step", "best")
    assert clash.returncode == 2 and "give the step once" in clash.stderr
