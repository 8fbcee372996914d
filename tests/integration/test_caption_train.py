"""Issue 26, done when: a spec with `dataset.caption.auto` trains end to end from a folder of bare images (the tiny
captioner; the stand-in ai-toolkit trainer keeps it cheap) and the artifact records the captioner; the preflight
puts the captioner's memory beside training's as a phase (max, not sum) and a captioner that is not downloaded
fails with the command that downloads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.fixtures.caption_fixtures import bare_images
from tests.integration.test_train_helpers import of_type, read_json, run_train
from zlt.lora.safetensors_io import read_header

pytest.importorskip("transformers")

AUTO = {"enable": True, "model": "zlt/tiny-captioner", "prefix": "", "max_words": 6}


def test_training_from_bare_images_captions_first_and_the_artifact_says_so(tmp_path: Path):
    folder = bare_images(tmp_path / "ds", n=4, size=64)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "bare", "dataset": {"path": "ds", "resolution": 512, "caption": {"auto": AUTO}},
        "training": {"backend": "ai-toolkit", "max_steps": 4, "warmup_steps": 0},
        "output": {"save": {"every": 2, "keep": 2}}}))
    proc, events = run_train(spec, tmp_path / "job", env={"FAKE_TRAINER_STEP_S": "0.01"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    phases = [e["phase"] for e in of_type(events, "phase")]
    assert phases.index("captioning") < phases.index("preparing_dataset")
    first = phases.index("captioning")
    counted = [e for e in events[first:] if e["type"] == "progress" and e["total"] == 4]
    assert counted and counted[-1]["step"] == 4  # images done / total, before the trainer's steps
    captions = sorted(folder.glob("*.txt"))
    assert len(captions) == 4 and all(0 < len(p.read_text().split()) <= 6 for p in captions)
    doc = read_json(tmp_path / "job" / "captions.json")
    assert doc["model"] == "zlt/tiny-captioner" and len(doc["generated"]) == 4 and doc["tiny"] is True
    art = Path(events[-1]["artifact"])
    meta = json.loads((art / "training_meta.json").read_text())
    assert meta["dataset"]["auto_captions"]["generated"] == doc["generated"]
    header = read_header(art / "lora.safetensors").metadata
    assert header["zlt.captioner"].startswith("zlt/tiny-captioner@tiny-florence2") and "4 caption(s)" in header[
        "zlt.captioner"]
    prepared = Path(read_json(tmp_path / "job" / "dataset.json")["prepared_dir"])
    assert all(p.read_text().startswith("<zstyle>, ") for p in prepared.glob("*.txt"))  # trigger_position: prefix


def test_preflight_holds_the_captioner_before_training_not_beside_it(tmp_path: Path):
    from zlt.flows.preflight import preflight
    from zlt.spec import load_spec_data

    bare_images(tmp_path / "ds", n=2)
    spec = load_spec_data({"dataset": {"path": str(tmp_path / "ds"), "caption": {"auto": {"enable": True}}},
                           "training": {"backend": "ai-toolkit"}}).spec
    report = preflight(spec, vram_gb=24.0, check_python=False, home=tmp_path / "home")
    checks = {c.name: c for c in report.checks}
    assert checks["captioner"].status == "fail" and "download florence-community/Florence-2-large" in checks[
        "captioner"].fix
    est = report.estimate
    assert est.phases["captioning"] == 3.0 and est.total_gb == max(est.phases.values())
    assert checks["captioner_vram"].status == "pass" and "before training" in checks["captioner_vram"].message
    assert checks["captioner_disk"].status == "pass"
