"""Issue 19.3: on every backend the artifact describes what was trained. Each test runs `zlt train` (stand-in
ai-toolkit / musubi checkouts that write real-format LoRA files, and the real built-in trainer on the tiny model)
and compares the metadata (`ss_*`, `modelspec.*`, `zlt.*`, training_meta.json `lora_config`) with the module set,
rank and alpha read from the trainer's own saved LoRA file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tests.integration.test_train_helpers import make_dataset, read_json, run_train, write_spec
from zlt.artifacts.trained import target_name
from zlt.core.units import rate_text
from zlt.lora.convert import read_lora
from zlt.lora.safetensors_io import read_header

pytestmark = pytest.mark.slow


def _saved(job: Path) -> tuple[list[str], int, int, float, dict]:
    """Targets, modules, rank, alpha of the trainer's final file, from its keys (alpha = rank when it has none)."""
    final = next(c for c in read_json(job / "checkpoints.json")["checkpoints"] if c["final"])
    weights, header = read_lora(Path(final["path"]))
    return sorted({target_name(m) for m in weights.modules}), len(weights.modules), weights.rank, weights.alpha, header


def _check(job: Path, events: list[dict]) -> tuple[dict, dict]:
    assert events[-1]["status"] == "succeeded", events[-1]
    targets, modules, rank, alpha, _ = _saved(job)
    art = Path(events[-1]["artifact"])
    header = read_header(art / "lora.safetensors").metadata
    meta = json.loads((art / "training_meta.json").read_text())
    assert header["zlt.target_modules"].split(",") == targets and header["zlt.lora_modules"] == str(modules)
    assert header["ss_network_dim"] == str(rank) and float(header["ss_network_alpha"]) == alpha
    lc = meta["lora_config"]
    assert (lc["target_modules"], lc["modules"], lc["rank"], lc["alpha"]) == (targets, modules, rank, alpha)
    assert header["ss_steps"] == str(meta["training"]["final_step"]) == header["zlt.step"]
    assert meta["trained"]["sources"]["target_modules"] == "saved LoRA keys"
    for ck in (art / "checkpoints").glob("*.safetensors"):
        assert read_header(ck).metadata["zlt.target_modules"] == header["zlt.target_modules"]
    return header, meta


def test_ai_toolkit_alpha_is_what_it_trained(tmp_path):
    spec = write_spec(tmp_path, steps=12, every=5, model={"lora": {"rank": 4, "alpha": 2}})
    proc, events = run_train(spec, tmp_path / "job", env={"FAKE_TRAINER_STEP_S": "0.01"})
    assert proc.returncode == 0, proc.stderr
    header, meta = _check(tmp_path / "job", events)
    # ai-toolkit's Z-Image LoRA has no alpha keys: it trains alpha = rank (its log line says so), not the spec's 2
    assert header["ss_network_alpha"] == "4" and meta["lora_config_spec"]["alpha"] == 2
    assert any("trained alpha 4" in w for w in meta["warnings"])
    rendered = yaml.safe_load((tmp_path / "job" / "render" / "ai_toolkit.yaml").read_text())["config"]["process"][0]
    assert header["ss_mixed_precision"] == rendered["train"]["dtype"]
    assert meta["trained"]["timestep"]["timestep_type"] == rendered["train"]["timestep_type"]
    assert meta["trained"]["adapter_merged"] is True  # the stand-in prints "Merging in assistant LoRA"
    # one series, every step: the loss ai-toolkit draws at bar n is step n+1's (set_postfix_str before update)
    curve = meta["curve"]
    assert curve["source"] == "progress.jsonl" and curve["steps"] == list(range(1, 13))
    assert curve["loss"] == [float(f"{0.5 / (1 + 0.05 * i):.3e}") for i in range(12)]
    result = read_json(tmp_path / "job" / "result.json")
    assert (result["first_loss"], result["last_loss"]) == (curve["loss"][0], curve["loss"][-1]) == (
        meta["curve_summary"]["first_loss"], meta["final_loss"])
    assert meta["it_s"] == result["it_s"] and f"{rate_text(result['it_s'])} average" in events[-1]["message"]


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="musubi's train step runs accelerate")
def test_musubi_module_set_and_alpha_come_from_its_file(tmp_path):
    spec = write_spec(tmp_path, backend="musubi", steps=12, every=5, model={"lora": {"rank": 4, "alpha": 2}})
    proc, events = run_train(spec, tmp_path / "job", backend="musubi", env={"FAKE_TRAINER_STEP_S": "0.01"})
    assert proc.returncode == 0, proc.stderr
    header, meta = _check(tmp_path / "job", events)
    _, _, _, _, source = _saved(tmp_path / "job")
    assert header["ss_network_alpha"] == "2" and header["ss_mixed_precision"] == source["ss_mixed_precision"]
    assert json.loads(header["zlt.timestep"])["timestep_sampling"] == source["ss_timestep_sampling"]
    argv = read_json(tmp_path / "job" / "render" / "argv.json")[-1]
    if not any(a.startswith(("exclude_patterns=", "include_patterns=")) for a in argv):
        # musubi's default set (attention + feed-forward of every block): recorded as such, and warned about
        assert "feed_forward.w1" in header["zlt.target_modules"] and header["zlt.lora_modules"] == "14"
        assert any("musubi trained 14 LoRA modules" in w for w in meta["warnings"])
    else:  # the render's patterns make musubi train the spec's set
        assert not any("LoRA modules of" in w for w in meta["warnings"]), meta["warnings"]
    if "--base_weights" in argv:
        assert meta["trained"]["adapter_merged"] is True and header["zlt.training_adapter"] != "none"


@pytest.mark.train
@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="needs the [train] extra")
def test_builtin_trainer(tmp_path):
    from PIL import Image

    make_dataset(tmp_path / "ds")
    for p in (tmp_path / "ds").glob("*.png"):
        Image.open(p).resize((64, 64)).save(p)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"},
                                  "lora": {"rank": 2, "alpha": 1, "target_modules": ["attention.to_q", "feed_forward.w1"]}},
        "dataset": {"path": "ds", "resolution": 32},
        "training": {"backend": "lightning", "max_steps": 4, "warmup_steps": 0},
        "output": {"save": {"every": 2, "keep": 2}},
    }))
    proc, events = run_train(spec, tmp_path / "job", backend="lightning", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    header, meta = _check(tmp_path / "job", events)
    assert header["zlt.target_modules"] == "attention.to_q,feed_forward.w1" and header["ss_network_alpha"] == "1"
    assert header["ss_mixed_precision"] == "32-true"  # the CPU run's phase line: what Fabric really used
    assert meta["trained"]["sources"]["precision"] == "trainer output"
    assert not [w for w in meta["warnings"] if "trained" in w]
    loss_log = (tmp_path / "job" / "output" / "loss_log.jsonl").read_text().splitlines()
    assert meta["curve"]["source"] == "loss_log.jsonl" and len(meta["curve"]["steps"]) == len(loss_log) == 4


def test_a_fresh_rerun_starts_a_new_series(tmp_path):
    spec = write_spec(tmp_path, steps=8, every=4)
    job = tmp_path / "job"
    env = {"FAKE_TRAINER_STEP_S": "0.01"}
    assert run_train(spec, job, env=env)[0].returncode == 0
    spec.write_text(spec.read_text().replace("max_steps: 8", "max_steps: 6"))
    assert run_train(spec, job, env=env)[0].returncode == 0
    rows = [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 6 and (job / "progress.jsonl.1").is_file()
    assert read_json(job / "result.json")["last_loss"] == float(f"{0.5 / (1 + 0.05 * 5):.3e}")
