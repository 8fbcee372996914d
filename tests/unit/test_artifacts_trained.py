"""What was trained, read from the job folder (saved keys, trainer output, render/), never from the spec alone."""

from __future__ import annotations

import json

from tests.fixtures.artifact_jobs import MAIN_MODULES, make_job_dir
from zlt.artifacts import collect_artifact
from zlt.artifacts.jobdir import read_job_dir
from zlt.artifacts.trained import describe_trained, differences, spec_targets, target_name
from zlt.lora.convert import read_lora
from zlt.lora.safetensors_io import read_header


def _describe(job):
    files = read_job_dir(job)
    final = next(c for c in files.checkpoints if c.final)
    weights, header = read_lora(final.path)
    return files, describe_trained(files, weights, header, final.step)


def test_target_names():
    assert target_name("layers.3.attention.to_out.0") == "attention.to_out"
    assert target_name("noise_refiner.0.feed_forward.w2") == "feed_forward.w2"
    assert target_name("layers.0.adaLN_modulation.0") == "adaLN_modulation"
    assert spec_targets(["attention"]) == ["attention.to_k", "attention.to_out", "attention.to_q", "attention.to_v"]
    assert {target_name(m) for m in MAIN_MODULES} == set(spec_targets(["attention", "feed_forward"]))


def test_musubi_alpha_and_modules_from_keys_adapter_from_its_log(tmp_path):
    job = make_job_dir(tmp_path, fmt="musubi", alpha=2.0, spec={"model": {"lora": {"alpha": 8, "target_modules": ["attention"]}}})
    final = job / "output" / "watercolor.safetensors"
    (job / "train.log").write_bytes(b"steps: 10%|#| 1/10 [00:01<00:09]\r\nall weights merged: /m/adapter_kohya.safetensors\n")
    files, t = _describe(job)
    assert (t.rank, t.alpha, t.modules) == (4, 2.0, len(MAIN_MODULES))
    assert "feed_forward.w1" in t.target_modules and t.sources["alpha"] == "saved LoRA keys"
    assert t.adapter_merged is True and t.adapter == "/m/adapter_kohya.safetensors"
    notes = differences(t, files)
    assert any(f"musubi trained {len(MAIN_MODULES)} LoRA modules" in n for n in notes) and any("trained alpha 2" in n for n in notes)
    rec = collect_artifact(job, home=tmp_path / "home")
    header = read_header(rec.path / "lora.safetensors").metadata
    assert header["ss_network_alpha"] == "2" and header["zlt.training_adapter"] == "/m/adapter_kohya.safetensors"
    meta = json.loads((rec.path / "training_meta.json").read_text())
    assert meta["lora_config"]["alpha"] == 2.0 and meta["lora_config_spec"]["alpha"] == 8
    assert final.is_file()


def test_ai_toolkit_without_alpha_keys_trained_alpha_equal_to_rank(tmp_path):
    job = make_job_dir(tmp_path, fmt="ai-toolkit", spec={"model": {"lora": {"alpha": 2}}})
    (job / "train.log").write_text("create LoRA network. base dim (rank): 4, alpha: 4\n")
    (job / "render" / "ai_toolkit.yaml").write_text(
        "config:\n  process:\n  - train: {dtype: bf16, timestep_type: sigmoid}\n    model: {assistant_lora_path: /a.safetensors}\n"
        "    network: {dropout: 0.1}\n")
    files, t = _describe(job)
    assert t.alpha == 4.0 and t.precision == "bf16" and t.timestep == {"timestep_type": "sigmoid"}
    assert t.adapter_merged is None and "render/ only" in t.sources["adapter"]  # no "Merging in assistant LoRA" seen
    assert t.dropout == 0.1 and any("trained alpha 4" in n for n in differences(t, files))


def test_builtin_precision_and_adapter_from_its_phase_lines(tmp_path):
    job = make_job_dir(tmp_path, fmt="diffusers")
    with open(job / "events.jsonl", "a") as fh:
        for msg in ("merged training adapter a.safetensors into 240 layers (off while sampling)",
                    "steps 1..1000 on cuda x2 (bf16-mixed); effective batch 8 = batch 1 x accumulation 4 x 2 device(s)"):
            fh.write(json.dumps({"seq": 999, "type": "phase", "phase": "loading_model", "message": msg}) + "\n")
    _files, t = _describe(job)
    assert t.precision == "bf16-mixed" and t.sources["precision"] == "trainer output"
    assert t.adapter_merged is True and t.adapter == "a.safetensors"
