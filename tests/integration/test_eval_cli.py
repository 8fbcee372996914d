"""`zlt eval` end to end on CPU: the tiny Z-Image model, a 3-checkpoint artifact, a tiny random CLIP model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("diffusers", reason="needs the [train] extra (diffusers)")
pytest.importorskip("transformers", reason="needs the [train] extra (transformers)")

from tests.conftest import run_zlt  # noqa: E402
from tests.fixtures.eval_fixtures import evaluable_artifact, tiny_clip  # noqa: E402

pytestmark = pytest.mark.train
METRICS = ("style_similarity", "prompt_alignment", "memorisation", "diversity", "kid_clip", "kid_clip_std", "fid_clip")


@pytest.fixture
def setup(tmp_path: Path, zlt_home: Path):
    art = evaluable_artifact(tmp_path / "jobs", zlt_home)
    clip = tiny_clip(tmp_path / "clip")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# held-out\n[trigger] a lighthouse at dusk\na red fox in snow\n", encoding="utf-8")
    return art, clip, prompts


@pytest.mark.slow
def test_eval_scores_every_checkpoint_and_the_base_and_records_the_best(setup, zlt_home: Path, tmp_path: Path):
    art, clip, prompts = setup
    r = run_zlt("eval", art, "--clip", str(clip), "--prompts", str(prompts), "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    report = json.loads(r.stdout)["report"]
    assert [c["step"] for c in report["checkpoints"]] == [0, 250, 500, 750, 1000]
    assert report["checkpoints"][0]["base"] and report["checkpoints"][-1]["final"]
    for row in report["checkpoints"]:
        assert set(METRICS) <= set(row["metrics"]), row["step"]
        for k in ("style_similarity", "prompt_alignment", "memorisation", "diversity"):
            assert isinstance(row["metrics"][k], float), (row["step"], k)
        assert row["metrics"]["kid_clip"] is None and "4 images" in row["metrics"]["kid_note"]
        assert len(row["images"]) == 4  # 2 prompts x 2 seeds
    assert report["settings"]["prompts"] == ["<zstyle> a lighthouse at dusk", "<zstyle> a red fox in snow"]
    assert report["settings"]["prompts_plain"] == ["a lighthouse at dusk", "a red fox in snow"]
    best = report["best"]["step"]
    assert best in (250, 500, 750, 1000) and report["best"]["reason"].startswith(f"step {best}")
    assert isinstance(report["best"]["distinguishable_from_base"], bool) and "targets" not in report
    assert all(row["spread"]["style_similarity"]["n"] == 4 for row in report["checkpoints"])
    assert report["inference"]["dtype"] == report["settings"]["precision"] == "fp32"  # what ran, not the spec's

    folder = Path(report["eval_dir"]).parent
    from PIL import Image

    from zlt.eval.pictures import HEADER_H, LABEL_W

    sheet = report["contact_sheet"]
    assert (sheet["rows"], sheet["cols"]) == (5, 4)
    with Image.open(folder / "eval" / "contact_sheet.png") as im:
        assert im.size == (LABEL_W + 4 * sheet["thumb"], HEADER_H + 5 * sheet["thumb"])
    assert (folder / "eval" / "curves.png").stat().st_size > 0
    assert json.loads((folder / "eval" / "report.json").read_text())["best"]["step"] == best
    meta = json.loads((folder / "training_meta.json").read_text())
    assert meta["best_step"] == best and meta["eval"]["report"] == "eval/report.json"

    v = run_zlt("artifacts", "verify", art, "--json")
    assert v.returncode == 0, v.stdout  # eval/ files and the new training_meta.json are in the index
    show = run_zlt("artifacts", "show", art)
    assert show.returncode == 0 and "best step" in show.stdout and "<- best" in show.stdout, show.stdout
    assert "STYLE" in show.stdout and "base" in show.stdout
    out = tmp_path / "best.safetensors"
    e = run_zlt("artifacts", "export", art, "--format", "comfyui", "--step", "best", "--out", str(out), "--json")
    assert e.returncode == 0, e.stdout
    from zlt.lora.safetensors_io import read_header

    header = read_header(out).metadata
    expect = "lora.safetensors" if best == 1000 else f"checkpoints/step_{best:06d}.safetensors"
    assert header["zlt.exported_from"].endswith(expect)


def test_a_checkpoint_that_does_not_exist_is_exit_2_naming_the_kept_steps(setup):
    art, clip, _ = setup
    r = run_zlt("eval", art, "--clip", str(clip), "--checkpoints", "250,300", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    err = json.loads(r.stdout)
    assert "step 300" in err["message"] and "250, 500, 750, 1000" in err["hint"]


def test_a_missing_metric_model_is_exit_3_with_the_fix(setup, tmp_path: Path):
    art, _clip, _ = setup
    r = run_zlt("eval", art, "--clip", "openai/clip-vit-large-patch14", "--json")
    assert r.returncode == 3, r.stdout + r.stderr
    err = json.loads(r.stdout)
    assert "HF_HUB_OFFLINE" in err["message"] and "hf download openai/clip-vit-large-patch14" in err["hint"]
    r = run_zlt("eval", art, "--clip", str(tmp_path / "no-such-clip"))
    assert r.returncode == 3 and "no such folder" in r.stderr and "hint:" in r.stderr


def test_help_shows_the_trigger_marker_as_typed():
    r = run_zlt("eval", "--help")
    assert r.returncode == 0 and "'[trigger]'" in r.stdout and "\\[" not in r.stdout


def test_export_best_before_any_evaluation_is_exit_2(setup):
    art, _clip, _ = setup
    r = run_zlt("artifacts", "export", art, "--format", "comfyui", "--step", "best")
    assert r.returncode == 2 and f"zlt eval {art}" in r.stderr
