"""Loading base models and ControlNets for inference: a local diffusers folder (the real model's code path, with the
tiny model saved by save_pretrained), an offline hub id refused with exit 3, and a tiny Z-Image ControlNet."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("diffusers", reason="needs the [train] extra (diffusers)")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tests.fixtures.infer_fixtures import tiny_artifact  # noqa: E402
from zlt.core.errors import EXIT_ENV_NOT_READY, BadInputError, EnvNotReadyError  # noqa: E402
from zlt.infer import PipelineCache, TransferParams, transfer  # noqa: E402
from zlt.infer.pipeline import DevicePlan, load_base_pipeline  # noqa: E402

pytestmark = pytest.mark.train
CPU = DevicePlan("cpu", "fp32", False)


def _image(pipe) -> np.ndarray:
    return np.asarray(pipe(prompt="a boat", height=64, width=64, num_inference_steps=2, guidance_scale=0.0,
                           generator=torch.Generator().manual_seed(1)).images[0], dtype=np.float64)


def test_a_local_diffusers_folder_loads_with_from_pretrained(tmp_path):
    from zlt.trainer.tiny import build_tiny_pipeline

    tiny = build_tiny_pipeline()
    tiny.save_pretrained(tmp_path / "model")
    pipe = load_base_pipeline({"name": str(tmp_path / "model"), "source": "local"}, CPU)
    assert np.array_equal(_image(pipe), _image(tiny))


def test_a_hub_model_missing_offline_is_env_not_ready(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(EnvNotReadyError) as e:
        load_base_pipeline({"name": "Tongyi-MAI/Z-Image-Turbo", "source": "huggingface"}, CPU)
    assert e.value.exit_code == EXIT_ENV_NOT_READY and "model_download" in e.value.message
    assert "hf download Tongyi-MAI/Z-Image-Turbo" in e.value.hint


def _tiny_controlnet(folder: Path) -> Path:
    from diffusers import ZImageControlNetModel

    torch.manual_seed(0)
    ZImageControlNetModel(control_layers_places=[0, 1], control_in_dim=16, dim=32, n_refiner_layers=1, n_heads=2,
                          n_kv_heads=2).save_pretrained(folder)
    return folder


def test_control_canny_with_a_controlnet_keeps_the_size(tmp_path, zlt_home):
    art = tiny_artifact(tmp_path / "jobs", zlt_home)
    src = tmp_path / "in.png"
    Image.new("RGB", (96, 64), "white").save(src)
    cn = _tiny_controlnet(tmp_path / "cn")
    r = transfer(TransferParams(loras=[{"artifact": art}], images=[str(src)], control="canny", controlnet=str(cn),
                                steps=2), cache=PipelineCache(), save=False)
    assert r.images[0].size == (96, 64) and r.params[0]["mode"] == "transfer-canny"


def _tiny_loader(base, plan):
    from zlt.trainer.tiny import build_tiny_pipeline

    return build_tiny_pipeline()


def test_control_refusals(tmp_path, zlt_home):
    art = tiny_artifact(tmp_path / "jobs", zlt_home)
    src = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(src)
    never = PipelineCache(loader=lambda *a: pytest.fail("must not load a model"))
    with pytest.raises(BadInputError, match=r"^transfer\.control_images: --control depth needs depth maps"):
        transfer(TransferParams(loras=[{"artifact": art}], images=[str(src)], control="depth", controlnet="x"),
                 cache=never)
    with pytest.raises(EnvNotReadyError, match=r"^transfer\.controlnet: cannot load"):
        transfer(TransferParams(loras=[{"artifact": art}], images=[str(src)], control="canny",
                                controlnet=str(tmp_path / "missing-controlnet")),
                 cache=PipelineCache(loader=_tiny_loader))
    assert not (zlt_home / "artifacts" / "lora" / art / "generations").exists() or not any(
        (zlt_home / "artifacts" / "lora" / art / "generations").iterdir())


def test_the_cache_keeps_one_pipeline_per_device_and_never_drops_one_in_use():
    import threading
    import time

    loaded: list[str] = []

    def loader(base, plan):
        loaded.append(f"{base['name']}@{plan.device}")
        return object()

    cache = PipelineCache(loader=loader)
    gpu0, gpu1 = DevicePlan("cuda:0", "bf16", False), DevicePlan("cuda:1", "bf16", False)
    cache.entry({"name": "m"}, gpu0)
    cache.entry({"name": "m"}, gpu1)
    assert cache.size == 2 and cache.stats.evictions == 0  # one per device: the two GPUs do not evict each other
    order: list[str] = []
    with cache.use({"name": "m"}, gpu0) as entry:
        t = threading.Thread(target=lambda: (cache.entry({"name": "other"}, gpu0), order.append("replaced")))
        t.start()
        time.sleep(0.2)
        order.append("run finished")
        assert entry.pipe is not None
    t.join(5)
    assert order == ["run finished", "replaced"] and entry.pipe is None
    assert loaded == ["m@cuda:0", "m@cuda:1", "other@cuda:0"] and cache.size == 2


def test_a_pickle_controlnet_is_refused_before_loading(tmp_path):
    from zlt.infer.pipeline import load_controlnet

    bad = tmp_path / "controlnet.pth"
    bad.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(BadInputError, match=r"^transfer\.controlnet: .*not a \.safetensors file"):
        load_controlnet(str(bad), CPU)


def test_a_job_slot_is_torchs_ordinal_under_cuda_visible_devices(monkeypatch):
    from zlt.infer.pipeline import cuda_ordinal

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_ordinal(None) is None and cuda_ordinal([]) is None and cuda_ordinal([3]) == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert (cuda_ordinal([2]), cuda_ordinal([3])) == (0, 1)
