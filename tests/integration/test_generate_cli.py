"""`zlt generate` / `zlt transfer` as a user or an agent runs them: real CLI subprocesses on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_zlt
from tests.fixtures.infer_fixtures import png_with_header, tiny_artifact


@pytest.fixture
def art(tmp_path: Path, zlt_home: Path) -> str:
    return tiny_artifact(tmp_path / "jobs", zlt_home)


def _generations(zlt_home: Path, art: str) -> list[Path]:
    folder = zlt_home / "artifacts" / "lora" / art / "generations"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.slow
@pytest.mark.train
def test_generate_and_transfer_write_pngs_under_the_artifact(art, zlt_home, tmp_path):
    pytest.importorskip("diffusers")
    from PIL import Image

    r = run_zlt("generate", art[:8], "-p", "a cat", "-p", "a dog", "--size", "64x48", "--steps", "2", "--seed", "5",
                "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    folder = Path(out["folder"])
    assert out["ok"] and folder.parent == zlt_home / "artifacts" / "lora" / art / "generations"
    assert [i["seed"] for i in out["images"]] == [5, 6] and out["contact_sheet"] == "contact_sheet.png"
    with Image.open(folder / out["images"][1]["file"]) as im:
        assert im.size == (64, 48) and im.text["prompt"] == "<zstyle> a dog"
    src = tmp_path / "photo.png"
    Image.new("RGB", (96, 64), "green").save(src)
    r = run_zlt("transfer", art, "--image", str(src), "--strength", "0.5", "--steps", "2", "--scale", "1.0")
    assert r.returncode == 0, r.stderr
    folder = Path(r.stdout.strip())
    with Image.open(folder / "000_seed0.png") as im:
        assert im.size == (96, 64) and im.text["mode"] == "transfer" and im.text["input"] == "photo.png"


@pytest.mark.parametrize("payload, words", [
    (b"%PDF-1.4 not an image", "not an image"),
    (png_with_header(0, 0), "transfer.images"),
    (png_with_header(20000, 20000), "too many pixels"),
])
def test_transfer_refuses_bad_images_with_exit_2(art, zlt_home, tmp_path, payload, words):
    bad = tmp_path / "upload.png"
    bad.write_bytes(payload)
    r = run_zlt("transfer", art, "--image", str(bad), "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    err = json.loads(r.stdout)
    assert err["message"].startswith("transfer.images: ") and words in err["message"]
    assert _generations(zlt_home, art) == []


def test_unknown_artifact_and_missing_checkpoint_exit_2(art, zlt_home):
    r = run_zlt("generate", "no-such-artifact", "-p", "x")
    assert r.returncode == 2 and "generate.loras: no artifact 'no-such-artifact'" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_zlt("generate", art, "-p", "x", "--checkpoint", "400", "--json")
    assert r.returncode == 2
    err = json.loads(r.stdout)
    assert err["message"].startswith("generate.checkpoint: ") and "250, 500, 750" in err["hint"]
    # --checkpoint takes 'best' as well as a step (the CLI door, like LoraUse); before any evaluation it says so
    r = run_zlt("generate", art, "-p", "x", "--checkpoint", "best", "--json")
    assert r.returncode == 2 and "evaluat" in r.stdout, r.stdout + r.stderr
    r = run_zlt("generate", art, "-p", "x", "--checkpoint", "soon", "--json")
    assert r.returncode == 2 and "'soon' is not a step number" in r.stdout, r.stdout + r.stderr
    r = run_zlt("generate", art, "-p", "x", "--size", "100x20")
    assert r.returncode == 2 and "generate.width: 100 is not a multiple of 16" in r.stderr
    assert _generations(zlt_home, art) == []


def test_submit_queues_a_generation_job(art, zlt_home):
    r = run_zlt("generate", art, "-p", "x", "--size", "64x64", "--steps", "2", "--submit", "--no-worker", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["state"] == "queued" and st["kind"] == "generate" and st["backend"] == "infer"
    r = run_zlt("status", st["job_id"], "--json")
    assert json.loads(r.stdout)["state"] == "queued"


def test_zlt_submit_generate_queues_the_same_job(art, zlt_home, tmp_path):
    r = run_zlt("submit", "--generate", art, "-p", "x", "--size", "64x64", "--steps", "2", "--no-worker", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["state"] == "queued" and st["kind"] == "generate" and st["backend"] == "infer"
    img = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (64, 48), (200, 30, 30)).save(img)
    r = run_zlt("submit", "--transfer", art, "--image", str(img), "--strength", "0.5", "--no-worker", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kind"] == "transfer"


def test_zlt_submit_generate_refuses_unknown_artifacts_and_a_spec(art, zlt_home, tmp_path):
    r = run_zlt("submit", "--generate", "no-such-artifact", "-p", "x", "--no-worker", "--json")
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\n")
    r = run_zlt("submit", "--generate", art, str(spec), "-p", "x", "--no-worker")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_submit_inference_argv_is_generate_with_submit():
    from zlt.cli.jobs import submit_inference_argv

    assert submit_inference_argv(["submit", "--json", "--generate", "A", "-p", "x"]) == \
        ["generate", "A", "--json", "-p", "x", "--submit"]
    assert submit_inference_argv(["submit", "--transfer=A", "--image", "i.png"]) == \
        ["transfer", "A", "--image", "i.png", "--submit"]
    assert submit_inference_argv(["submit", "spec.yaml"]) == ["submit", "spec.yaml"]
    assert submit_inference_argv(["status", "--generate", "A"]) == ["status", "--generate", "A"]
