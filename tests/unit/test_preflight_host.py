"""Host checks: disk (through a fake statvfs), RAM (a described host), dataset size; and model files in a
hand-built HF cache."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from zlt.preflight.host import DiskUsage, dataset_stats, disk_needs, lora_file_gb, ram_check
from zlt.preflight.models import check_adapter, check_base_model, check_model_files, diffusers_folder_problems
from zlt.profiles import load_profiles
from zlt.spec import load_spec_data

GIB = 1 << 30


def spec_for(dataset: Path, **sets):
    return load_spec_data({"dataset": {"path": str(dataset)}}, sets=[f"{k}={v}" for k, v in sets.items()]).spec


def images(folder: Path, n: int, size: int = 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:03d}.png").write_bytes(b"\0" * size)
    (folder / "notes.txt").write_text("not an image")
    return folder


def statvfs(free_gib: float):
    """A fake disk: the same free space wherever it is asked."""
    return lambda path: DiskUsage(int(500 * GIB), int((500 - free_gib) * GIB), int(free_gib * GIB))


def test_dataset_stats_counts_images_only(tmp_path: Path):
    data = images(tmp_path / "data", 3)
    (data / ".cache").mkdir()
    (data / ".cache" / "x.png").write_bytes(b"1")
    n, size = dataset_stats(data)
    assert n == 3 and size == pytest.approx(3000 / GIB)
    assert dataset_stats(tmp_path / "missing") == (0, 0.0)


def test_disk_needs_scale_with_rank_and_keep(tmp_path: Path):
    data = images(tmp_path / "data", 10)
    p = load_profiles()["24gb"]
    small = disk_needs(spec_for(data), "ai-toolkit", p, tmp_path / "home", registry=tmp_path / "reg",
                       usage=statvfs(100))
    big = disk_needs(spec_for(data, **{"model.lora.rank": 128, "output.save.keep": 9}), "ai-toolkit", p,
                     tmp_path / "home", registry=tmp_path / "reg", usage=statvfs(100))
    assert len(small) == 1  # same filesystem: one need, the paths summed
    assert small[0].items["checkpoints"] == pytest.approx(lora_file_gb(spec_for(data), "ai-toolkit") * 5)
    assert big[0].items["checkpoints"] == pytest.approx(small[0].items["checkpoints"] * 8 * 10 / 5)
    assert big[0].need_gb > small[0].need_gb and small[0].status == "pass"


def test_full_disk_fails_and_nearly_full_warns(tmp_path: Path):
    spec = spec_for(images(tmp_path / "data", 5), **{"model.lora.rank": 64})
    p = load_profiles()["24gb"]
    kw = {"registry": tmp_path / "reg", "hf_cache": tmp_path / "hf", "download_gb": 19.2}
    full = disk_needs(spec, "ai-toolkit", p, tmp_path / "home", usage=statvfs(2.0), **kw)[0]
    assert full.status == "fail" and full.items["model_download"] == 19.2 and full.need_gb > 19.2
    tight = disk_needs(spec, "ai-toolkit", p, tmp_path / "home", usage=statvfs(full.need_gb + 1), **kw)[0]
    assert tight.status == "warn"


def test_ram_check_for_a_small_host():
    spec = spec_for(Path("/x"))
    p = load_profiles()["24gb"]
    tiny_host = ram_check(spec, p, "lightning", memory=SimpleNamespace(available=8 * GIB, total=16 * GIB))
    assert tiny_host.status == "fail" and tiny_host.minimum_gb > 8
    roomy = ram_check(spec, p, "lightning", memory=SimpleNamespace(available=64 * GIB, total=64 * GIB))
    assert roomy.status == "pass"
    mid = ram_check(spec, p, "lightning", memory=SimpleNamespace(available=16 * GIB, total=32 * GIB))
    assert mid.status == "warn"


# ---- model files --------------------------------------------------------------------------------------------


def diffusers_folder(folder: Path, *, drop_shard: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "ZImagePipeline", "transformer": ["diffusers", "ZImageTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "Qwen3Model"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "safety_checker": [None, None]}))
    for sub in ("transformer", "vae", "text_encoder", "scheduler"):
        (folder / sub).mkdir(exist_ok=True)
    shards = ["diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"]
    (folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": shards[0], "b": shards[1]}}))
    for s in shards[: 1 if drop_shard else 2]:
        (folder / "transformer" / s).write_bytes(b"\0" * 10)
    return folder


def hf_snapshot(cache: Path, repo: str, rev: str = "abc123") -> Path:
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(rev)
    return repo_dir / "snapshots" / rev


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_diffusers_folder_problems(tmp_path: Path):
    assert diffusers_folder_problems(diffusers_folder(tmp_path / "ok")) == []
    assert diffusers_folder_problems(diffusers_folder(tmp_path / "partial", drop_shard=True)) == [
        "transformer/diffusion_pytorch_model-00002-of-00002.safetensors is missing"]
    assert diffusers_folder_problems(tmp_path / "none") == ["model_index.json is missing"]


def test_hub_model_in_the_cache_passes(hf_cache: Path, tmp_path: Path):
    diffusers_folder(hf_snapshot(hf_cache, "Tongyi-MAI/Z-Image-Turbo"))
    r = check_base_model(spec_for(tmp_path))
    assert r.status == "pass" and "HF cache" in r.message


def test_hub_model_missing_offline_fails_online_warns(hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = check_base_model(spec_for(tmp_path))
    assert r.status == "fail" and "HF_HUB_OFFLINE=1" in r.message
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")
    r = check_base_model(spec_for(tmp_path))
    assert r.status == "warn" and r.download_gb > 15 and "hf-mirror.com" in r.message
    assert r.fix == "pre-download it: hf download Tongyi-MAI/Z-Image-Turbo"


def test_partial_download_offline_fails(hf_cache: Path, tmp_path: Path):
    diffusers_folder(hf_snapshot(hf_cache, "Tongyi-MAI/Z-Image-Turbo"), drop_shard=True)
    r = check_base_model(spec_for(tmp_path))  # conftest sets HF_HUB_OFFLINE=1
    assert r.status == "fail" and "partly" in r.message


def test_local_model_folder(tmp_path: Path):
    ok = diffusers_folder(tmp_path / "zimage")
    assert check_base_model(spec_for(tmp_path, **{"model.base.name": str(ok)})).status == "pass"
    r = check_base_model(spec_for(tmp_path, **{"model.base.name": str(tmp_path / "gone")}))
    assert r.status == "fail" and "does not exist" in r.message


def test_adapter_from_the_cache_or_a_local_file(hf_cache: Path, tmp_path: Path):
    spec = spec_for(tmp_path)
    assert check_adapter(spec).status == "fail"  # offline and not cached
    snap = hf_snapshot(hf_cache, "ostris/zimage_turbo_training_adapter")
    snap.mkdir(parents=True)
    (snap / "zimage_turbo_training_adapter_v2.safetensors").write_bytes(b"\0")
    assert check_adapter(spec).status == "pass"
    local = tmp_path / "adapter.safetensors"
    local.write_bytes(b"\0")
    assert check_adapter(spec_for(tmp_path, **{"model.base.training_adapter": str(local)})).status == "pass"
    assert check_adapter(spec_for(tmp_path, **{"model.base.training_adapter": "none"})) is None


def test_musubi_needs_local_single_files(tmp_path: Path):
    home = tmp_path / "home"
    results = check_model_files(spec_for(tmp_path), "musubi", home)
    assert [r.what for r in results] == ["musubi dit", "musubi vae", "musubi text_encoder", "musubi adapter"]
    assert all(r.status == "fail" for r in results)
    assert "model.base.dit" in results[0].fix
    folder = home / "models" / "z-image"
    folder.mkdir(parents=True)
    for name in ("z_image_turbo_bf16.safetensors", "ae.safetensors", "qwen_3_4b.safetensors",
                 "zimage_turbo_training_adapter_v2.safetensors"):
        (folder / name).write_bytes(b"\0")
    assert all(r.status == "pass" for r in check_model_files(spec_for(tmp_path), "musubi", home))


def test_tiny_model_is_built_in(tmp_path: Path):
    spec = spec_for(tmp_path, **{"model.base.name": "zlt/tiny-zimage", "dataset.resolution": 64})
    assert [r.status for r in check_model_files(spec, "lightning", tmp_path)] == ["pass"]
