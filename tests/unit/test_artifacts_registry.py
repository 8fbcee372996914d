"""list / show / verify / export / rm / artifact_file on collected artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.artifact_jobs import make_job_dir
from zlt.artifacts import (
    artifact_file,
    collect_artifact,
    export_artifact,
    get_artifact,
    list_artifacts,
    remove_artifact,
    verify_artifact,
)
from zlt.artifacts.store import fetch_all
from zlt.core.errors import BadInputError, NotFoundError
from zlt.lora.convert import detect_format, effective_deltas, read_lora
from zlt.lora.safetensors_io import file_data_sha256, read_header


@pytest.fixture
def art(tmp_path, zlt_home):
    return collect_artifact(make_job_dir(tmp_path / "jobs", fmt="musubi", alpha=2.0), home=zlt_home)


def test_list_and_show(art, zlt_home):
    rows = list_artifacts(zlt_home)
    assert [r["id"] for r in rows] == [art.id]
    assert rows[0]["exists"] and rows[0]["final_step"] == 1000 and rows[0]["key_format"] == "diffusers"
    a = get_artifact(zlt_home, art.id)
    assert a["job_id"] == art.job_id and a["curve"]["points"] == 100 and a["curve"]["source"] == "events"
    assert {f["path"] for f in a["files"]} >= {"lora.safetensors", "training_meta.json", "spec.yaml", "loss.png"}
    assert a["lora_metadata"]["modelspec.architecture"] == "Z-Image/lora"
    assert a["training_meta"]["gpu"]["name"] == "NVIDIA GeForce RTX 4090" and "curve" not in a["training_meta"]


def test_find_by_job_id_and_prefix(art, zlt_home, tmp_path):
    assert get_artifact(zlt_home, art.job_id)["id"] == art.id
    assert get_artifact(zlt_home, "20260801-12")["id"] == art.id
    collect_artifact(make_job_dir(tmp_path / "j2", job_id="20260801-130000-bbb000"), home=zlt_home)
    with pytest.raises(BadInputError, match="matches 2 artifacts"):
        get_artifact(zlt_home, "20260801-1")
    with pytest.raises(NotFoundError):
        get_artifact(zlt_home, "nope")


def test_verify_ok(art, zlt_home):
    r = verify_artifact(zlt_home, art.id)
    assert r.ok and r.checked == len(art.files) and r.to_dict()["mismatches"] == []


def test_verify_finds_a_changed_byte(art, zlt_home):
    p = art.path / "checkpoints" / "step_000500.safetensors"
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0x01
    p.write_bytes(bytes(raw))
    r = verify_artifact(zlt_home, art.id)
    assert not r.ok
    problems = {(m["path"], m["problem"]) for m in r.mismatches}
    assert ("checkpoints/step_000500.safetensors", "changed") in problems
    assert ("checkpoints/step_000500.safetensors", "data does not match modelspec.hash_sha256") in problems


def test_verify_missing_extra_truncated_and_meta(art, zlt_home):
    (art.path / "loss.png").unlink()
    (art.path / "intruder.safetensors").write_bytes(b"\x00" * 4)
    lora = art.path / "lora.safetensors"
    lora.write_bytes(lora.read_bytes()[:50])
    meta = art.path / "training_meta.json"
    meta.write_text(meta.read_text().replace('"succeeded"', '"failed"'))
    problems = {(m["path"], m["problem"]) for m in verify_artifact(zlt_home, art.id).mismatches}
    assert {("loss.png", "missing"), ("intruder.safetensors", "unexpected"), ("lora.safetensors", "changed"),
            ("lora.safetensors", "corrupt"), ("intruder.safetensors", "corrupt"),
            ("training_meta.json", "changed")} <= problems


def test_verify_a_folder_by_path(art, zlt_home, tmp_path):
    import shutil

    copy = tmp_path / "elsewhere" / art.id
    shutil.copytree(art.path, copy)
    assert verify_artifact(zlt_home, str(copy)).ok
    (copy / "spec.yaml").write_text("tampered")
    r = verify_artifact(zlt_home, str(copy))
    assert [(m["path"], m["problem"]) for m in r.mismatches] == [("spec.yaml", "changed")]


@pytest.mark.parametrize("fmt", ["comfyui", "diffusers", "kohya", "musubi", "ai-toolkit"])
def test_export_keeps_the_update(art, zlt_home, tmp_path, fmt):
    out = export_artifact(zlt_home, art.id, fmt, tmp_path / "exports")
    assert out.name == f"{art.id}.{fmt}.safetensors" and out.parent == tmp_path / "exports"
    expected = {"musubi": "kohya"}.get(fmt, fmt)
    weights, meta = read_lora(out)
    assert weights.source_format == expected
    assert meta["zlt.key_format"] == expected and meta["modelspec.architecture"] == "Z-Image/lora"
    assert meta["modelspec.hash_sha256"] == "0x" + file_data_sha256(out)
    src = effective_deltas(read_lora(art.path / "lora.safetensors")[0])
    got = effective_deltas(weights)
    for m in src:
        np.testing.assert_allclose(got[m], src[m], rtol=1e-5, atol=1e-7)
    assert verify_artifact(zlt_home, art.id).ok  # the registry copy is untouched


def test_export_defaults_refusals_and_steps(art, zlt_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = export_artifact(zlt_home, art.id, "kohya")
    assert out == (tmp_path / f"{art.id}.kohya.safetensors").resolve()
    assert detect_format(read_header(out).tensors) == "kohya"
    with pytest.raises(BadInputError, match="already exists"):
        export_artifact(zlt_home, art.id, "kohya")
    export_artifact(zlt_home, art.id, "kohya", overwrite=True)
    step = export_artifact(zlt_home, art.id, "comfyui", step=250)
    assert step.name.endswith(".comfyui.step_000250.safetensors")
    assert read_header(step).metadata["zlt.step"] == "250"
    with pytest.raises(NotFoundError, match="step_000123"):
        export_artifact(zlt_home, art.id, "kohya", step=123)
    with pytest.raises(BadInputError, match="unknown LoRA key format"):
        export_artifact(zlt_home, art.id, "ckpt")
    lora = art.path / "lora.safetensors"
    raw = bytearray(lora.read_bytes())
    raw[-2] ^= 0xFF
    lora.write_bytes(bytes(raw))
    with pytest.raises(BadInputError, match="does not match the sha256"):
        export_artifact(zlt_home, art.id, "diffusers", tmp_path / "x.safetensors")


def test_rm_deletes_folder_and_index(art, zlt_home):
    remove_artifact(zlt_home, art.id)
    assert not art.path.exists() and list_artifacts(zlt_home) == [] and fetch_all(zlt_home) == []
    assert [p.name for p in art.path.parent.iterdir()] == []  # no trash left behind
    with pytest.raises(NotFoundError):
        remove_artifact(zlt_home, art.id)


def test_rm_of_a_vanished_folder_drops_the_entry(art, zlt_home):
    import shutil

    shutil.rmtree(art.path)
    assert list_artifacts(zlt_home)[0]["exists"] is False
    with pytest.raises(NotFoundError, match="folder .* is gone"):
        get_artifact(zlt_home, art.id)
    remove_artifact(zlt_home, art.id)
    assert list_artifacts(zlt_home) == []


def test_artifact_file_is_fenced(art, zlt_home, tmp_path):
    assert artifact_file(zlt_home, art.id, "lora.safetensors") == (art.path / "lora.safetensors").resolve()
    assert artifact_file(zlt_home, art.id, "checkpoints/step_000250.safetensors").is_file()
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    os.symlink(secret, art.path / "link.txt")
    for bad in ("../" * 6 + "etc/passwd", str(secret), "link.txt", "checkpoints", "", "nope.txt"):
        with pytest.raises(NotFoundError):
            artifact_file(zlt_home, art.id, bad)


def test_registry_folder_must_be_writable(tmp_path, zlt_home):
    from zlt.core.errors import EnvNotReadyError

    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    job = make_job_dir(tmp_path / "jobs", spec={"output": {"registry": {"path": str(blocker / "lora")}}})
    with pytest.raises(EnvNotReadyError, match="cannot be created") as exc:
        collect_artifact(job, home=zlt_home)
    assert "output.registry.path" in exc.value.hint


def test_path_is_relative_to_home(tmp_path, zlt_home):
    job = make_job_dir(tmp_path / "jobs", spec={"output": {"registry": {"path": "my/loras"}}})
    rec = collect_artifact(job, home=zlt_home)
    assert rec.path.parent == (Path(zlt_home) / "my" / "loras").resolve()
