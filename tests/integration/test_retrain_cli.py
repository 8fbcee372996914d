"""`zlt retrain` end to end: real CLI, real worker (`zlt worker --once`), the real runner and the stand-in ai-toolkit
and musubi trainers; then versions, lineage, diff, promote/rollback/resolve and rm through the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_zlt
from tests.integration.test_train_helpers import FAKE_AITOOLKIT, FAKE_MUSUBI, make_dataset, write_tiny_adapter

pytestmark = pytest.mark.slow
TRAINERS = ["--ai-toolkit", str(FAKE_AITOOLKIT), "--musubi", str(FAKE_MUSUBI), "--profile", "24gb",
            "--skip-preflight"]


def _spec(tmp: Path, backend: str) -> Path:
    make_dataset(tmp / "ds")
    spec = {"name": "wc", "dataset": {"path": "ds", "resolution": 512},
            "training": {"backend": backend, "max_steps": 10, "warmup_steps": 0},
            "output": {"save": {"every": 5, "keep": 2}}}
    if backend == "musubi":  # musubi's steps convert the turbo adapter first: a tiny local one
        spec["model"] = {"base": {"training_adapter": str(write_tiny_adapter(tmp / "adapter.safetensors"))}}
    p = tmp / "wc.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def _json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


def _run_queue() -> None:
    proc = run_zlt("worker", "--once", "--poll", "0.2", timeout=300)
    assert proc.returncode == 0, proc.stderr


def _status(jid: str) -> dict:
    return _json(run_zlt("status", jid, "--json"))


def _rendered(st: dict) -> str:
    return "\n".join(p.read_text() for p in sorted((Path(st["job_dir"]) / "render").iterdir()) if p.is_file())


def test_retrain_versions_lineage_and_rollback_with_ai_toolkit(tmp_path: Path):
    spec = _spec(tmp_path, "ai-toolkit")
    first = _json(run_zlt("submit", str(spec), "--no-worker", "--json", *TRAINERS))
    _run_queue()
    v0 = _status(first["job_id"])
    assert v0["state"] == "succeeded", v0
    assert v0["artifact_id"].endswith("_wc_v0")

    # unchanged dataset and settings, trainer state in the job folder: ai-toolkit resumes its own run
    more = _json(run_zlt("retrain", "wc", "--more-steps", "6", "--no-worker", "--json", *TRAINERS))
    assert more["retrain"]["mode"] == "resume" and more["retrain"]["max_steps"] == 16
    _run_queue()
    v1 = _status(more["job_id"])
    assert v1["state"] == "succeeded", v1
    assert v1["artifact_id"].endswith("_wc_v1")
    log = Path(v1["job_dir"], "train.log").read_text()
    assert "#### IMPORTANT RESUMING FROM" in log and "Found step 10 in metadata" in log

    # --steps: a warm start from the weights, through ai-toolkit's network.pretrained_lora_path
    warm = _json(run_zlt("retrain", "wc", "--steps", "5", "--no-worker", "--json", *TRAINERS))
    assert warm["retrain"]["mode"] == "warm"
    _run_queue()
    v2 = _status(warm["job_id"])
    assert v2["state"] == "succeeded", v2
    cfg = yaml.safe_load((Path(v2["job_dir"]) / "render" / "ai_toolkit.yaml").read_text())
    init = cfg["config"]["process"][0]["network"]["pretrained_lora_path"]
    assert init.endswith("warm_start/init.ai-toolkit.safetensors") and Path(init).is_file()
    assert "Using pretrained lora path from config" in Path(v2["job_dir"], "train.log").read_text()

    # a changed dataset: warm start, and the lineage names the added image
    make_dataset(tmp_path / "ds2", n=3)
    from PIL import Image

    Image.new("RGB", (256, 256), (1, 2, 3)).save(tmp_path / "ds2" / "new.png")
    (tmp_path / "ds2" / "img0.png").unlink()
    grown = _json(run_zlt("retrain", "wc@v0", "--more-steps", "5", "--dataset", str(tmp_path / "ds2"), "--no-worker",
                          "--json", *TRAINERS))
    assert grown["retrain"]["mode"] == "warm" and "dataset" in grown["retrain"]["why_warm"]
    _run_queue()
    v3 = _status(grown["job_id"])
    assert v3["state"] == "succeeded", v3

    line = _json(run_zlt("artifacts", "list", "--style", "wc", "--json"))
    assert [(v["version"], v["final_step"]) for v in line["versions"]] == [(0, 10), (1, 16), (2, 5), (3, 5)]
    parents = {v["version"]: v["parent_id"] for v in line["versions"]}
    assert parents == {0: None, 1: v0["artifact_id"], 2: v1["artifact_id"], 3: v0["artifact_id"]}
    shown = _json(run_zlt("artifacts", "show", v3["artifact_id"], "--json"))["artifact"]
    changes = shown["lineage"]["dataset_changes"]
    assert [a["file"] for a in changes["added"]] == ["new.png"] and [r["file"] for r in changes["removed"]] == ["img0.png"]
    assert "dataset.path" in shown["lineage"]["spec_diff"]

    diff = _json(run_zlt("artifacts", "diff", "wc@v0", "wc@v1", "--json"))
    assert diff["spec"]["training.max_steps"] == {"from": 10, "to": 16}
    assert diff["metrics"]["final_step"]["delta"] == 6
    human = run_zlt("artifacts", "diff", "wc@v0", "wc@v3")
    assert human.returncode == 0 and "+ new.png" in human.stdout and "- img0.png" in human.stdout

    # promote / resolve / rollback / rm
    assert run_zlt("artifacts", "resolve", "wc").stdout.strip().endswith("_wc_v3")  # never promoted: the newest
    _json(run_zlt("artifacts", "promote", "wc@v0", "--json"))  # the oldest version
    assert run_zlt("artifacts", "resolve", "wc").stdout.strip().endswith("_wc_v0")
    refused = run_zlt("artifacts", "rm", v0["artifact_id"], "--yes")
    assert refused.returncode == 2 and "current version" in refused.stderr and "--force" in refused.stderr
    assert "'zlt artifacts rollback wc' makes" in refused.stderr  # a hint that works
    back = _json(run_zlt("artifacts", "rollback", "wc", "--json"))  # undoes the promotion: the newest again
    assert back["current"].endswith("_wc_v3") and back["previous"] == v0["artifact_id"]
    resolved = _json(run_zlt("artifacts", "resolve", "wc", "--json"))
    assert resolved["id"] == back["current"] and Path(resolved["lora"]).is_file()
    hist = _json(run_zlt("artifacts", "history", "wc", "--json"))["history"]
    assert [h["action"] for h in hist] == ["promote", "rollback"]
    listed = run_zlt("artifacts", "list", "--style", "wc")
    assert listed.returncode == 0 and f"* v3   {back['current']}" in listed.stdout


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                    reason="the rendered musubi train step runs `python -m accelerate.commands.launch`")
def test_retrain_with_musubi_resumes_its_last_state_or_loads_network_weights(tmp_path: Path):
    spec = _spec(tmp_path, "musubi")
    first = _json(run_zlt("submit", str(spec), "--no-worker", "--json", *TRAINERS))
    _run_queue()
    v0 = _status(first["job_id"])
    assert v0["state"] == "succeeded", v0
    more = _json(run_zlt("retrain", v0["artifact_id"], "--more-steps", "5", "--no-worker", "--json", *TRAINERS))
    assert more["retrain"]["mode"] == "resume"
    _run_queue()
    v1 = _status(more["job_id"])
    assert v1["state"] == "succeeded", v1
    argv = json.loads((Path(v1["job_dir"]) / "render" / "argv.json").read_text())[-1]
    state = argv[argv.index("--resume") + 1]
    assert state.endswith("wc-step00000010-state") and argv[argv.index("--max_train_steps") + 1] == "5"
    assert _status(more["job_id"])["step"] == 15

    warm = _json(run_zlt("retrain", "wc", "--steps", "5", "--no-worker", "--json", *TRAINERS))
    _run_queue()
    v2 = _status(warm["job_id"])
    assert v2["state"] == "succeeded", v2
    argv = json.loads((Path(v2["job_dir"]) / "render" / "argv.json").read_text())[-1]
    assert argv[argv.index("--network_weights") + 1].endswith("warm_start/init.kohya.safetensors")
    assert "load network weights from" in Path(v2["job_dir"], "train.log").read_text()
    line = _json(run_zlt("artifacts", "list", "--style", "wc", "--json"))
    assert [(v["version"], v["final_step"]) for v in line["versions"]] == [(0, 10), (1, 15), (2, 5)]


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the [train] extra")
def test_retrain_with_the_builtin_trainer_resumes_or_starts_from_the_weights(tmp_path: Path):
    from PIL import Image

    make_dataset(tmp_path / "ds")
    for p in (tmp_path / "ds").glob("*.png"):
        Image.open(p).resize((64, 64)).save(p)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
        "dataset": {"path": "ds", "resolution": 32},
        "training": {"backend": "lightning", "max_steps": 4, "warmup_steps": 0},
        "output": {"save": {"every": 2, "keep": 2}},
    }))
    first = _json(run_zlt("submit", str(spec), "--no-worker", "--json", "--profile", "cpu", "--skip-preflight"))
    _run_queue()
    v0 = _status(first["job_id"])
    assert v0["state"] == "succeeded", v0
    more = _json(run_zlt("retrain", "tiny", "--more-steps", "2", "--no-worker", "--json", "--profile", "cpu",
                         "--skip-preflight"))
    assert more["retrain"]["mode"] == "resume" and more["retrain"]["max_steps"] == 6
    warm = _json(run_zlt("retrain", "tiny@v0", "--steps", "2", "--no-worker", "--json", "--profile", "cpu",
                         "--skip-preflight"))
    assert warm["retrain"]["mode"] == "warm"
    _run_queue()
    v1, v2 = _status(more["job_id"]), _status(warm["job_id"])
    assert v1["state"] == "succeeded" and v2["state"] == "succeeded", (v1, v2)
    events = [json.loads(x) for x in Path(v1["job_dir"], "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["type"] == "resumed"] == [4]
    assert [e["step"] for e in events if e["type"] == "progress"][0] == 5
    cfg = json.loads((Path(v2["job_dir"]) / "render" / "trainer.json").read_text())
    assert cfg["output"]["init_lora"].endswith("warm_start/init.diffusers.safetensors")
    assert "LoRA initialised from" in Path(v2["job_dir"], "events.jsonl").read_text()
    line = _json(run_zlt("artifacts", "list", "--style", "tiny", "--json"))
    assert [(v["version"], v["final_step"], v["mode"]) for v in line["versions"]] == [
        (0, 4, None), (1, 6, "resume"), (2, 2, "warm")]
