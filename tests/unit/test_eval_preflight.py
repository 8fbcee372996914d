"""eval.enable makes preflight check the metric model before training starts; never a download offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_preflight_checks import ROOMY_RAM, roomy_disk
from zlt.preflight.clip_model import check_clip
from zlt.preflight.gpu import StaticProbe
from zlt.spec.load import load_spec_data


def _report(tmp_path: Path, **sets):
    from zlt.flows.preflight import preflight as run_preflight

    base = {"model.base.name": "zlt/tiny-zimage", "dataset.resolution": 64, "job.resources.min_vram_gb": "null"}
    s = load_spec_data({"dataset": {"path": str(tmp_path / "data")}},
                       sets=[f"{k}={v}" for k, v in {**base, **sets}.items()]).spec
    return run_preflight(s, probe=StaticProbe(unavailable="no driver"), check_data=False, check_python=False,
                         disk_usage=roomy_disk, memory=ROOMY_RAM)


def test_no_eval_no_check(tmp_path: Path):
    assert not [c for c in _report(tmp_path).checks if c.name == "eval_model"]


def test_an_uncached_hub_model_offline_fails_preflight_with_the_fix(tmp_path: Path):
    r = _report(tmp_path, **{"eval.enable": "true"})
    check = [c for c in r.checks if c.name == "eval_model"][0]
    assert check.status == "fail" and not r.ok and r.exit_code == 3
    assert "HF_HUB_OFFLINE" in check.message and "hf download openai/clip-vit-large-patch14" in check.fix


def test_a_local_folder_passes_and_a_folder_without_config_fails(tmp_path: Path):
    good = tmp_path / "clip"
    good.mkdir()
    (good / "config.json").write_text("{}")
    r = _report(tmp_path, **{"eval.enable": "true", "eval.models.clip": str(good)})
    assert [c for c in r.checks if c.name == "eval_model"][0].status == "pass"
    assert check_clip(str(tmp_path)).ok is False and "config.json" in check_clip(str(tmp_path)).message


def test_online_an_uncached_model_is_a_warning_not_a_failure(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    monkeypatch.setattr("zlt.preflight.clip_model.hub_reachable", lambda timeout=3.0: True)  # online
    c = check_clip("openai/clip-vit-large-patch14")
    assert c.ok and c.source == "download"
