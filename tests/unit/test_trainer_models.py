"""Model loading (tiny, local folder, hub offline), LoRA injection, adapter merging, runtime resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.unit.test_trainer_fixtures import tiny_config  # noqa: E402
from zlt.core.errors import BadInputError, EnvNotReadyError  # noqa: E402
from zlt.trainer.config import ADALN_TARGET, LoraConfig, ModelConfig  # noqa: E402
from zlt.trainer.models import (  # noqa: E402
    add_lora,
    load_encoders,
    load_sampling_parts,
    load_transformer,
    merge_lora_file,
    resolve_adapter,
)
from zlt.trainer.runtime import resolve  # noqa: E402

TINY = ModelConfig(name="zlt/tiny-zimage", source="builtin", weight_dtype="fp32")


def test_tiny_model_is_seeded_and_independent_of_global_rng():
    torch.manual_seed(123)
    a = load_transformer(TINY)
    state = torch.get_rng_state()
    torch.manual_seed(999)
    b = load_transformer(TINY)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    torch.manual_seed(123)
    load_transformer(TINY)
    assert torch.equal(torch.get_rng_state(), state)  # building it drew nothing from the global stream
    assert not any(p.requires_grad for p in a.parameters())


def test_add_lora_targets_and_seeded_init():
    tr = load_transformer(TINY)
    params = add_lora(tr, LoraConfig(rank=2, alpha=4, target_modules=["attention.to_q", ADALN_TARGET]), seed=5)
    names = [n for n, p in tr.named_parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in params)
    wrapped = {n.split(".lora_")[0] for n in names}
    assert "layers.0.adaLN_modulation.0" in wrapped and "noise_refiner.0.adaLN_modulation.0" in wrapped
    assert "layers.1.attention.to_q" in wrapped and "context_refiner.0.attention.to_q" in wrapped
    assert not any("all_final_layer" in n or "to_k" in n for n in wrapped)
    tr2 = load_transformer(TINY)
    torch.manual_seed(42)  # a different global state must not change the init
    add_lora(tr2, LoraConfig(rank=2, alpha=4, target_modules=["attention.to_q", ADALN_TARGET]), seed=5)
    sd1 = {n: p for n, p in tr.named_parameters() if p.requires_grad}
    assert all(torch.equal(p, sd1[n]) for n, p in tr2.named_parameters() if p.requires_grad)


def _adapter(path: Path, tr, prefix: str, scale_meta: dict | None = None) -> dict:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    sd = {}
    for name in ("layers.0.attention.to_q", "layers.1.feed_forward.w2"):
        w = dict(tr.named_modules())[name].weight
        sd[f"{prefix}{name}.lora_A.weight"] = torch.randn(3, w.shape[1], generator=g)
        sd[f"{prefix}{name}.lora_B.weight"] = torch.randn(w.shape[0], 3, generator=g)
    meta = {"format": "pt"}
    if scale_meta:
        meta["lora_adapter_metadata"] = json.dumps({f"transformer.{k}": v for k, v in scale_meta.items()})
    save_file(sd, str(path), metadata=meta)
    return sd


@pytest.mark.parametrize("layout", ["ai-toolkit", "diffusers"])
def test_merge_training_adapter(tmp_path: Path, layout: str):
    tr = load_transformer(TINY)
    before = {k: v.clone() for k, v in tr.state_dict().items()}
    prefix, meta, scale = ("diffusion_model.", None, 1.0) if layout == "ai-toolkit" else (
        "transformer.", {"r": 3, "lora_alpha": 6, "target_modules": ["to_q", "w2"]}, 2.0)
    sd = _adapter(tmp_path / "adapter.safetensors", tr, prefix, meta)
    assert merge_lora_file(tr, tmp_path / "adapter.safetensors") == 2
    a, b = sd[f"{prefix}layers.0.attention.to_q.lora_A.weight"], sd[f"{prefix}layers.0.attention.to_q.lora_B.weight"]
    expected = before["layers.0.attention.to_q.weight"] + scale * (b @ a)
    assert torch.allclose(tr.state_dict()["layers.0.attention.to_q.weight"], expected, atol=1e-5)
    assert torch.equal(tr.state_dict()["layers.0.attention.to_k.weight"], before["layers.0.attention.to_k.weight"])


def test_adapter_for_another_model_is_refused(tmp_path: Path):
    from safetensors.torch import save_file

    save_file({"diffusion_model.blocks.9.attn.lora_A.weight": torch.zeros(2, 4),
               "diffusion_model.blocks.9.attn.lora_B.weight": torch.zeros(4, 2)}, str(tmp_path / "a.safetensors"))
    with pytest.raises(BadInputError, match="does not match"):
        merge_lora_file(load_transformer(TINY), tmp_path / "a.safetensors")


def test_local_diffusers_folder_loads_like_the_hub_layout(tmp_path: Path):
    from zlt.trainer.tiny import build_tiny_pipeline

    ref = build_tiny_pipeline()
    ref.save_pretrained(tmp_path / "zimage")
    local = ModelConfig(name=str(tmp_path / "zimage"), source="local", weight_dtype="fp32")
    tr = load_transformer(local)
    assert all(torch.equal(x, y) for x, y in zip(tr.state_dict().values(), ref.transformer.state_dict().values(), strict=True))
    enc = load_encoders(local)
    assert enc.pipe.transformer is None
    vae, scheduler = load_sampling_parts(local)
    assert all(torch.equal(x, y) for x, y in zip(vae.state_dict().values(), ref.vae.state_dict().values(), strict=True))
    assert scheduler.config.shift == ref.scheduler.config.shift
    got = enc.pipe.encode_prompt("a cat", do_classifier_free_guidance=False)[0][0]
    assert torch.equal(got, ref.encode_prompt("a cat", do_classifier_free_guidance=False)[0][0])


def test_a_folder_with_pickle_weights_is_never_loaded(tmp_path: Path, monkeypatch):
    """Issue 13 item 17: transformer weights saved as pytorch_model .bin (pickle) are refused, not torch.load-ed."""
    import torch.serialization

    from zlt.trainer.tiny import build_tiny_pipeline

    build_tiny_pipeline().transformer.save_pretrained(tmp_path / "zimage" / "transformer", safe_serialization=False)
    assert list((tmp_path / "zimage" / "transformer").glob("*.bin"))
    loaded: list[object] = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loaded.append(a) or real_load(*a, **k))
    monkeypatch.setattr(torch.serialization, "load", torch.load)
    with pytest.raises(EnvNotReadyError):
        load_transformer(ModelConfig(name=str(tmp_path / "zimage"), source="local", weight_dtype="fp32"))
    assert loaded == []


def test_hub_model_is_never_downloaded_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-zlt-hf-home")
    model = ModelConfig(name="Tongyi-MAI/Z-Image-Turbo", source="huggingface", weight_dtype="bf16")
    with pytest.raises(EnvNotReadyError) as e:
        load_transformer(model)
    assert "HF_HUB_OFFLINE=1" in e.value.message and "hf download Tongyi-MAI/Z-Image-Turbo" in e.value.hint
    with pytest.raises(EnvNotReadyError, match="training adapter"):
        resolve_adapter("ostris/zimage_turbo_training_adapter/zimage_turbo_training_adapter_v2.safetensors")
    with pytest.raises(BadInputError, match="only .safetensors"):  # a pickle is never loaded (issue 13 item 17)
        resolve_adapter("adapter.bin")
    with pytest.raises(BadInputError, match="not a file"):
        resolve_adapter("adapter.safetensors")


def test_runtime_resolution(tmp_path: Path):
    warnings: list[str] = []
    cfg = tiny_config(tmp_path, tmp_path, training={"precision": "bf16-mixed"}, model={"weight_dtype": "bf16"},
                      runtime={"accelerator": "auto"})
    r = resolve(cfg, warnings.append, cuda_available=False, bf16_supported=False)
    assert (r.accelerator, r.precision, r.weight_dtype) == ("cpu", "32-true", "fp32") and len(warnings) == 2
    warnings.clear()
    r = resolve(cfg, warnings.append, cuda_available=True, bf16_supported=False)
    assert (r.accelerator, r.precision, r.weight_dtype) == ("cuda", "16-mixed", "fp16") and "no bf16" in warnings[0]
    r = resolve(cfg, warnings.append, cuda_available=True, bf16_supported=True)
    assert (r.accelerator, r.precision, r.weight_dtype) == ("cuda", "bf16-mixed", "bf16")
    with pytest.raises(EnvNotReadyError, match="no CUDA"):
        resolve(cfg.model_copy(update={"runtime": cfg.runtime.model_copy(update={"accelerator": "cuda"})}),
                warnings.append, cuda_available=False, bf16_supported=False)
