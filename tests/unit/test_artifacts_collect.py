"""collect_artifact: registry folders built from job folders holding real checkpoints in each upstream format."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.artifact_jobs import make_job_dir, save_state
from zlt.artifacts import ArtifactExistsError, collect_artifact, get_artifact, list_artifacts
from zlt.artifacts.store import fetch_all
from zlt.core.errors import BadInputError, JobFailedError
from zlt.core.fsutil import sha256_file, sha256_json
from zlt.lora.convert import detect_format, effective_deltas, read_lora
from zlt.lora.safetensors_io import file_data_sha256, read_file, read_header
from zlt.spec.load import load_spec

REQUIRED_KEYS = (
    "modelspec.sai_model_spec", "modelspec.architecture", "modelspec.title", "modelspec.trigger_phrase",
    "modelspec.resolution", "modelspec.date", "modelspec.hash_sha256", "ss_base_model_version", "ss_network_dim",
    "ss_network_alpha", "ss_learning_rate", "ss_max_train_steps", "ss_num_train_images", "training_info",
    "zlt.job_id", "zlt.spec_sha256", "zlt.dataset_sha256",
)


def _registry(home: Path) -> Path:
    return home / "artifacts" / "lora"


def _assert_same_update(a: Path, b: Path, rtol=1e-5):
    da, db = effective_deltas(read_lora(a)[0]), effective_deltas(read_lora(b)[0])
    assert set(da) == set(db)
    for m in da:
        np.testing.assert_allclose(da[m], db[m], rtol=rtol, atol=1e-6, err_msg=m)


@pytest.mark.parametrize(
    "fmt, alpha, dtype", [("ai-toolkit", None, "BF16"), ("musubi", 1.0, "BF16"), ("musubi", 4.0, "F16"), ("diffusers", None, "F32")]
)
def test_collects_each_upstream_format(tmp_path, zlt_home, fmt, alpha, dtype):
    job = make_job_dir(tmp_path, fmt=fmt, alpha=alpha, dtype=dtype)
    rec = collect_artifact(job, home=zlt_home)
    assert rec.id == "20260801-120000-abc123_watercolor_v0"
    assert rec.path == _registry(zlt_home) / rec.id
    names = sorted(p.relative_to(rec.path).as_posix() for p in rec.path.rglob("*") if p.is_file())
    assert names == [
        "checkpoints/step_000250.safetensors", "checkpoints/step_000500.safetensors",
        "checkpoints/step_000750.safetensors", "lora.safetensors", "loss.png", "render/argv.json",
        "render/config.yaml", "samples/1785000000__000001000_0.jpg", "spec.yaml", "training_meta.json",
    ]
    tensors, meta = read_file(rec.path / "lora.safetensors")
    assert detect_format(tensors.keys()) == "diffusers" and all(k.startswith("transformer.") for k in tensors)
    assert not any(k.endswith(".alpha") for k in tensors)  # diffusers' loader would mangle them
    _assert_same_update(rec.path / "lora.safetensors", job / "output" / "watercolor.safetensors", rtol=2e-2)
    assert rec.warnings == []


def test_lora_header_metadata(tmp_path, zlt_home):
    job = make_job_dir(tmp_path)
    rec = collect_artifact(job, home=zlt_home)
    meta = read_header(rec.path / "lora.safetensors").metadata
    for key in REQUIRED_KEYS:
        assert key in meta, key
    spec = load_spec(job / "spec.yaml").spec
    assert meta["modelspec.architecture"] == "Z-Image/lora"
    assert meta["ss_base_model_version"] == "zimage"
    assert meta["modelspec.hash_sha256"] == "0x" + file_data_sha256(rec.path / "lora.safetensors")
    assert meta["modelspec.trigger_phrase"] == "<zstyle>" and meta["modelspec.resolution"] == "1024x1024"
    assert meta["modelspec.title"] == "watercolor"
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("4", "4")
    assert (meta["ss_learning_rate"], meta["ss_max_train_steps"], meta["ss_num_train_images"]) == ("0.0001", "1000", "12")
    assert json.loads(meta["training_info"])["step"] == 1000
    assert meta["zlt.job_id"] == "20260801-120000-abc123"
    assert meta["zlt.spec_sha256"] == sha256_json(spec.model_dump(mode="json"))
    assert meta["zlt.dataset_sha256"] == "d" * 64
    assert meta["software"].startswith("{")  # ai-toolkit's own provenance key survives
    ck = read_header(rec.path / "checkpoints" / "step_000250.safetensors").metadata
    assert json.loads(ck["training_info"])["step"] == 250 and ck["zlt.step"] == "250"
    assert ck["modelspec.title"] == "watercolor step 250" and ck["zlt.final"] == "false"
    assert ck["modelspec.hash_sha256"] == "0x" + file_data_sha256(rec.path / "checkpoints" / "step_000250.safetensors")


def test_training_meta(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, loss_log=True)
    rec = collect_artifact(job, home=zlt_home, attempts=2)
    meta = json.loads((rec.path / "training_meta.json").read_text())
    assert meta["job_id"] == "20260801-120000-abc123" and meta["attempts"] == 2
    assert meta["started_at"] and meta["ended_at"] and meta["duration_s"] == pytest.approx(565.0)
    assert meta["backend"]["name"] == "ai-toolkit" and meta["backend"]["version"] == "ai-toolkit@0123abc"
    assert meta["gpu"] == {"name": "NVIDIA GeForce RTX 4090", "peak_vram_gb": 21.5}
    assert meta["dataset"]["dataset_sha256"] == "d" * 64 and meta["dataset"]["num_images"] == 12
    assert meta["dataset"]["skipped"] == [{"file": "bad.png", "reason": "corrupt"}]  # what prepare left out
    assert meta["curve"]["source"] == "loss_log.db" and len(meta["curve"]["steps"]) == 1000
    assert meta["final_loss"] == pytest.approx(0.5 / 11) and meta["it_s"] == 1.0  # loss_log.db wall_time: 1 s/step
    assert meta["zlt_version"]
    files = meta["files"]
    assert "training_meta.json" not in files
    on_disk = {p.relative_to(rec.path).as_posix() for p in rec.path.rglob("*") if p.is_file()} - {"training_meta.json"}
    assert set(files) == on_disk
    for rel, info in files.items():
        assert info["sha256"] == sha256_file(rec.path / rel), rel
    row = fetch_all(zlt_home)[0]
    assert row["meta"]["files"]["training_meta.json"]["sha256"] == sha256_file(rec.path / "training_meta.json")
    assert row["job_id"] == rec.job_id and row["backend"] == "ai-toolkit" and row["dataset_sha256"] == "d" * 64


@pytest.mark.parametrize("key_format, prefix", [("comfyui", "diffusion_model."), ("kohya", "lora_unet_")])
def test_key_format_from_spec(tmp_path, zlt_home, key_format, prefix):
    job = make_job_dir(tmp_path, fmt="musubi", alpha=2.0, spec={"output": {"key_format": key_format}})
    rec = collect_artifact(job, home=zlt_home)
    tensors, meta = read_file(rec.path / "lora.safetensors")
    assert detect_format(tensors) == key_format and all(k.startswith(prefix) for k in tensors)
    assert meta["zlt.key_format"] == key_format
    _assert_same_update(rec.path / "lora.safetensors", job / "output" / "watercolor.safetensors")


def test_keep_limits_intermediate_checkpoints(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, steps=(200, 400, 600, 800), spec={"output": {"save": {"keep": 2, "every": 200}}})
    rec = collect_artifact(job, home=zlt_home)
    assert sorted(p.name for p in (rec.path / "checkpoints").iterdir()) == [
        "step_000600.safetensors", "step_000800.safetensors"]
    assert (job / "output" / "watercolor_000000200.safetensors").exists()  # the job folder is never pruned


def test_corrupt_checkpoint_is_reported_not_copied(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, corrupt_steps=(500,))
    rec = collect_artifact(job, home=zlt_home)
    assert not (rec.path / "checkpoints" / "step_000500.safetensors").exists()
    assert len(rec.warnings) == 1 and "watercolor_000000500.safetensors" in rec.warnings[0]
    assert "corrupt" in rec.warnings[0]
    meta = json.loads((rec.path / "training_meta.json").read_text())
    assert meta["warnings"] == rec.warnings and [c["step"] for c in meta["checkpoints"]] == [250, 750]


def test_corrupt_final_falls_back_to_newest_checkpoint(tmp_path, zlt_home):
    job = make_job_dir(tmp_path)
    final = job / "output" / "watercolor.safetensors"
    final.write_bytes(final.read_bytes()[:100])  # header length says more than is there
    rec = collect_artifact(job, home=zlt_home)
    assert any("truncated" in w for w in rec.warnings) and any("step 750" in w for w in rec.warnings)
    assert rec.final_step == 750
    _assert_same_update(rec.path / "lora.safetensors", job / "output" / "watercolor_000000750.safetensors")


def test_no_readable_checkpoint_fails_and_leaves_nothing(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, steps=())
    final = job / "output" / "watercolor.safetensors"
    final.write_bytes(b"\x01")
    with pytest.raises(JobFailedError, match="no readable checkpoint"):
        collect_artifact(job, home=zlt_home)
    assert list(_registry(zlt_home).iterdir()) == [] and list_artifacts(zlt_home) == []


def test_failure_during_build_leaves_no_folder(tmp_path, zlt_home):
    job = make_job_dir(tmp_path)
    save_state(job / "output" / "watercolor.safetensors", {"diffusion_model.layers.0.attention.to_q.lokr_w1": np.ones((2, 2), np.float32)})
    with pytest.raises(BadInputError, match="unsupported LoRA key"):
        collect_artifact(job, home=zlt_home)
    assert list(_registry(zlt_home).iterdir()) == []  # the staging folder is gone too
    assert list_artifacts(zlt_home) == []


def test_existing_folder_is_never_overwritten(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, spec={"output": {"naming": {"pattern": "{job_id}_{style_name}"}}})  # no version
    first = collect_artifact(job, home=zlt_home)
    before = {p: sha256_file(p) for p in first.path.rglob("*") if p.is_file()}
    with pytest.raises(ArtifactExistsError, match="never overwritten") as exc:
        collect_artifact(job, home=zlt_home)
    assert "{version}" in exc.value.hint
    assert {p: sha256_file(p) for p in first.path.rglob("*") if p.is_file()} == before
    assert [p.name for p in _registry(zlt_home).iterdir()] == [first.id]


def test_a_users_own_folder_of_that_name_is_not_touched(tmp_path, zlt_home):
    job = make_job_dir(tmp_path)
    mine = _registry(zlt_home) / "20260801-120000-abc123_watercolor_v0"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    rec = collect_artifact(job, home=zlt_home)  # the literal _v0 reads as {version}: the next free one is taken
    assert rec.id == "20260801-120000-abc123_watercolor_v1"
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    plain = make_job_dir(tmp_path / "plain", spec={"output": {"naming": {"pattern": "{job_id}_{style_name}_v0x"}}})
    (_registry(zlt_home) / "20260801-120000-abc123_watercolor_v0x").mkdir()
    with pytest.raises(ArtifactExistsError):
        collect_artifact(plain, home=zlt_home)


def test_version_placeholder_is_bumped(tmp_path, zlt_home):
    spec = {"output": {"naming": {"pattern": "{style_name}_r{rank}_v{version}"}}}
    a = collect_artifact(make_job_dir(tmp_path / "a", spec=spec), home=zlt_home)
    b = collect_artifact(make_job_dir(tmp_path / "b", spec=spec, job_id="20260802-000000-fff000"), home=zlt_home)
    assert (a.id, b.id) == ("watercolor_r4_v0", "watercolor_r4_v1")
    assert [r["id"] for r in list_artifacts(zlt_home)] == ["watercolor_r4_v0", "watercolor_r4_v1"]


def test_custom_registry_path_is_found_by_id(tmp_path, zlt_home):
    custom = tmp_path / "gold mine"
    job = make_job_dir(tmp_path / "jobs", spec={"output": {"registry": {"path": str(custom)}}})
    rec = collect_artifact(job, home=zlt_home)
    assert rec.path.parent == custom
    assert get_artifact(zlt_home, rec.id)["path"] == str(custom / rec.id)


def test_hostile_job_id_stays_inside_the_registry(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, result={"job_id": "../../../../tmp/evil"})
    rec = collect_artifact(job, home=zlt_home)
    assert rec.path.parent == _registry(zlt_home)
    assert rec.id == "tmp_evil_watercolor_v0"


def test_without_checkpoints_json_the_output_folder_is_scanned(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, fmt="musubi", alpha=1.0)
    (job / "checkpoints.json").unlink()
    rec = collect_artifact(job, home=zlt_home)
    assert sorted(p.name for p in (rec.path / "checkpoints").iterdir()) == [
        "step_000250.safetensors", "step_000500.safetensors", "step_000750.safetensors"]
    assert any("scanning" in w for w in rec.warnings)
    _assert_same_update(rec.path / "lora.safetensors", job / "output" / "watercolor.safetensors")


def test_sample_events_inside_the_job_are_kept(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, samples=False)
    (job / "extra").mkdir()
    (job / "extra" / "s1.png").write_bytes(b"\x89PNG fake")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"secret")
    with open(job / "events.jsonl", "a") as fh:
        for p in (str(job / "extra" / "s1.png"), str(outside), "../outside.png"):
            fh.write(json.dumps({"seq": 9999, "ts": 1.0, "type": "sample", "path": p, "step": 10}) + "\n")
    rec = collect_artifact(job, home=zlt_home)
    assert sorted(p.name for p in (rec.path / "samples").iterdir()) == ["s1.png"]


def test_stale_staging_of_dead_process_is_swept(tmp_path, zlt_home):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname().replace("-", "_")
    stale = _registry(zlt_home) / f".staging-{host}-{int(dead.stdout)}-deadbeef"
    stale.mkdir(parents=True)
    (stale / "lora.safetensors").write_bytes(b"half")
    live = _registry(zlt_home) / f".staging-{host}-{os.getpid()}-cafe0000"  # still running: left alone
    live.mkdir()
    collect_artifact(make_job_dir(tmp_path), home=zlt_home)
    assert not stale.exists() and live.exists()


def test_index_failure_unpublishes_the_folder(tmp_path, zlt_home):
    import sqlite3
    from contextlib import closing

    from zlt.artifacts.tables import connect

    with closing(connect(zlt_home)) as db:  # a store the index write cannot complete in
        db.execute("DROP TABLE artifacts")
    with pytest.raises(sqlite3.OperationalError):
        collect_artifact(make_job_dir(tmp_path), home=zlt_home)
    assert list(_registry(zlt_home).iterdir()) == []  # no folder the index does not name


def test_network_alpha_comes_from_the_weights_when_recorded(tmp_path, zlt_home):
    rec = collect_artifact(make_job_dir(tmp_path, fmt="musubi", alpha=2.0), home=zlt_home)
    meta = read_header(rec.path / "lora.safetensors").metadata
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("4", "2")


def test_ai_toolkit_layout_and_runner_marks(tmp_path, zlt_home):
    """ai-toolkit writes <training_folder>/<name>/ (checkpoints, samples/, loss_log.db); the runner's
    checkpoints.json marks files it found unreadable as valid: false."""
    from tests.fixtures.artifact_jobs import write_loss_log

    job = make_job_dir(tmp_path, samples=False)
    nested = job / "output" / "watercolor"
    nested.mkdir()
    for p in (job / "output").glob("*.safetensors"):
        p.rename(nested / p.name)
    (nested / "samples").mkdir()
    (nested / "samples" / "1785000000__000000250_0.jpg").write_bytes(b"\xff\xd8fake")
    write_loss_log(nested / "loss_log.db", [1, 2, 3])
    doc = json.loads((job / "checkpoints.json").read_text())
    for c in doc["checkpoints"]:
        c["path"] = str(nested / Path(c["path"]).name)
    doc["checkpoints"][1].update(valid=False, problem="truncated header")
    (job / "checkpoints.json").write_text(json.dumps(doc))
    rec = collect_artifact(job, home=zlt_home)
    assert [p.name for p in (rec.path / "samples").iterdir()] == ["1785000000__000000250_0.jpg"]
    meta = json.loads((rec.path / "training_meta.json").read_text())
    assert meta["curve"]["source"] == "loss_log.db" and [c["step"] for c in meta["checkpoints"]] == [250, 750]
    assert any("truncated header" in w for w in rec.warnings)


def test_resumed_attempt_folder_is_searched_too(tmp_path, zlt_home):
    job = make_job_dir(tmp_path, fmt="musubi", alpha=1.0, samples=True)
    attempt = job / "output" / "resume_from_00000500"
    attempt.mkdir()
    final = job / "output" / "watercolor.safetensors"
    final.rename(attempt / final.name)
    doc = json.loads((job / "checkpoints.json").read_text())
    doc["output_dir"] = str(attempt)
    doc["checkpoints"][-1]["path"] = str(attempt / final.name)
    (job / "checkpoints.json").write_text(json.dumps(doc))
    rec = collect_artifact(job, home=zlt_home)
    assert rec.warnings == [] and (rec.path / "samples").is_dir()  # samples of the first attempt are kept
    _assert_same_update(rec.path / "lora.safetensors", attempt / final.name)


@pytest.mark.parametrize("runner_listed", [True, False])
def test_builtin_trainer_checkpoints_reach_the_registry_not_its_resume_states(tmp_path, zlt_home, runner_listed):
    """Issue 13.1: output/state/<name>_<step>.safetensors holds optimizer tensors under the LoRA files' names."""
    from zlt.artifacts import export_artifact
    from zlt.run.checkpoints import scan_checkpoints, write_checkpoints_json

    job = make_job_dir(tmp_path, fmt="diffusers", steps=(20, 40), final_step=60,
                       spec={"output": {"save": {"every": 20, "keep": 2}}})
    out = job / "output"
    for step in (20, 40):  # what zlt/trainer/checkpoint.py save_state writes
        save_state(out / "state" / f"watercolor_{step:09d}.safetensors",
                   {"optim.state.0.exp_avg": np.ones((4, 32), np.float32), "rng.torch": np.zeros(8, np.float32)},
                   {"zlt.state_step": str(step)})
        (out / "state" / f"watercolor_{step:09d}.json").write_text("{}", encoding="utf-8")
    if runner_listed:
        write_checkpoints_json(job, "lightning", out, scan_checkpoints(out, "watercolor"))
    else:
        (job / "checkpoints.json").unlink()
    rec = collect_artifact(job, home=zlt_home)
    assert not any("unrecognised" in w for w in rec.warnings), rec.warnings
    assert sorted(p.name for p in (rec.path / "checkpoints").iterdir()) == [
        "step_000020.safetensors", "step_000040.safetensors"]
    meta = json.loads((rec.path / "training_meta.json").read_text())
    assert [c["step"] for c in meta["checkpoints"]] == [20, 40]
    dest = export_artifact(zlt_home, rec.id, "comfyui", tmp_path / "exp", step=40)
    _assert_same_update(dest, out / "watercolor_000000040.safetensors")
