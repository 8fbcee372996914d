"""Speed and memory switches: float8 base storage, regional compile, attention backend, the switchable turbo
adapter, and the VAE visiting the GPU only while sampling."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.unit.test_trainer_fixtures import make_images, tiny_config  # noqa: E402
from zlt.trainer.accel import compile_blocks, decide_attention, decide_compile, float8_storage  # noqa: E402
from zlt.trainer.adapter import MergedAdapter  # noqa: E402
from zlt.trainer.config import LoraConfig, ModelConfig  # noqa: E402
from zlt.trainer.emit import EventWriter  # noqa: E402
from zlt.trainer.models import add_lora, load_encoders, load_transformer, merge_lora_file  # noqa: E402

TINY = ModelConfig(name="zlt/tiny-zimage", source="builtin", weight_dtype="fp32")
F8 = torch.float8_e4m3fn


def _inputs():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(16, 1, 8, 8, generator=g)], torch.tensor([0.3]), [torch.randn(7, 16, generator=g)]


def _lora_grads(tr):
    x, t, caps = _inputs()
    tr(x, t, caps, return_dict=False)[0][0].float().pow(2).mean().backward()
    return torch.cat([p.grad.flatten() for p in tr.parameters() if p.requires_grad])


def _nonzero_b(tr):
    with torch.no_grad():
        for n, p in tr.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.linspace(-0.1, 0.1, p.numel()).view_as(p))


def test_float8_storage_keeps_the_lora_fp32_and_gradients_exact():
    lora = LoraConfig(rank=2, alpha=2)
    stored = load_transformer(TINY)
    add_lora(stored, lora, seed=3)
    n = float8_storage(stored, torch.float32)
    frozen = {p.dtype for p in stored.parameters() if not p.requires_grad}
    assert n > 0 and F8 in frozen
    assert all(p.dtype == torch.float32 for p in stored.parameters() if p.requires_grad)
    # reference: the same float8-rounded weights held in fp32, no hooks
    rounded = {k: v.float() for k, v in stored.state_dict().items()}
    ref = load_transformer(TINY)
    add_lora(ref, lora, seed=3)
    ref.load_state_dict(rounded)
    _nonzero_b(stored), _nonzero_b(ref)
    assert torch.allclose(_lora_grads(stored), _lora_grads(ref), atol=1e-6)


def test_float8_storage_with_bf16_compute_and_no_autocast():
    """A real-size base stays bf16 on the CPU (no autocast there): float8 storage computing in bf16 must still feed
    the fp32 LoRA an fp32 input (bench/realsize.py found the step failing: bf16 input, fp32 LoRA weight)."""
    stored = load_transformer(ModelConfig(name="zlt/tiny-zimage", source="builtin", weight_dtype="bf16"))
    add_lora(stored, LoraConfig(rank=2, alpha=2), seed=3)
    float8_storage(stored, torch.bfloat16)
    _nonzero_b(stored)
    x, t, caps = _inputs()
    out = stored([v.bfloat16() for v in x], t, [c.bfloat16() for c in caps], return_dict=False)[0][0]
    assert out.dtype == torch.bfloat16
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in stored.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_float8_storage_lets_go_of_the_mapped_weight_files(tmp_path: Path):
    """Weights load memory-mapped from safetensors; the few tensors float8 leaves in bf16 (norms) must not keep the
    files mapped, or every page the cast read stays resident (bench/realsize.py: 20.1 GiB peak, 11.5 of it dead)."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("needs Linux /proc")
    torch.manual_seed(0)
    tiny = load_transformer(TINY).to(torch.bfloat16)
    tiny.save_pretrained(str(tmp_path / "transformer"))
    tr = load_transformer(ModelConfig(name=str(tmp_path), source="local", weight_dtype="bf16"))
    mapped = lambda: sum(str(tmp_path) in line for line in maps.read_text().splitlines())  # noqa: E731
    assert mapped() >= 1  # loaded memory-mapped
    add_lora(tr, LoraConfig(rank=2, alpha=2), seed=0)
    float8_storage(tr, torch.bfloat16)
    import gc

    gc.collect()
    assert mapped() == 0
    assert any(p.dtype == torch.bfloat16 for p in tr.parameters())  # the norms kept their dtype, now as copies


def test_float8_text_encoder_for_the_caching_pass():
    enc = load_encoders(TINY.model_copy(update={"quantize": "float8"}))
    dtypes = {p.dtype for p in enc.pipe.text_encoder.parameters()}
    assert F8 in dtypes
    assert all(p.dtype != F8 for p in enc.pipe.vae.parameters())  # the VAE is small: left as loaded
    embeds, _ = enc.pipe.encode_prompt(["a boat"], device=torch.device("cpu"), do_classifier_free_guidance=False)
    assert embeds[0].dtype == torch.float32 and torch.isfinite(embeds[0]).all()


def test_regional_compile_wraps_each_repeated_block():
    tr = load_transformer(TINY)
    n = compile_blocks(tr, backend="eager")  # dynamo traces the real path; inductor codegen is for the GPU
    assert n == 4  # 2 layers + 1 noise refiner + 1 context refiner: all ZImageTransformerBlock
    block = tr.layers[0]
    assert hasattr(block, "_compiled_call_impl") and block._compiled_call_impl is not None
    x, t, caps = _inputs()
    assert torch.isfinite(tr(x, t, caps, return_dict=False)[0][0]).all()


def test_decisions():
    assert decide_compile("auto", "cuda") == (True, None) and decide_compile("auto", "cpu") == (False, None)
    assert decide_compile("on", "cpu") == (True, None) and decide_compile("off", "cuda") == (False, None)
    assert decide_compile("auto", "cuda", float8=True) == (False, None)  # inductor cannot compile float8 casting
    on, why = decide_compile("on", "cuda", float8=True)
    assert not on and "cannot compile float8" in why
    none, flash2 = (lambda m: False), (lambda m: m == "flash_attn")
    both = lambda m: m in ("flash_attn", "flash_attn_interface")  # noqa: E731
    assert decide_attention("auto", "cuda", 1, both) == ("flash", None)  # FA3 through diffusers has no backward
    assert decide_attention("auto", "cuda", 1, flash2) == ("flash", None)
    assert decide_attention("auto", "cuda", 1, none) == ("sdpa", None)
    assert decide_attention("auto", "cuda", 2, both) == ("sdpa", None)  # captions differ in length: masks
    assert decide_attention("auto", "cpu", 1, both) == ("sdpa", None)
    assert decide_attention("flash", "cuda", 2, both)[0] == "sdpa"
    backend, why = decide_attention("flash", "cuda", 1, none)
    assert backend == "sdpa" and "flash_attn is not installed" in why


def _adapter_file(path: Path, tr) -> None:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(7)
    sd = {}
    for name in ("layers.0.attention.to_q", "layers.1.feed_forward.w2"):
        w = dict(tr.named_modules())[name].weight
        sd[f"diffusion_model.{name}.lora_A.weight"] = torch.randn(3, w.shape[1], generator=g) * 0.1
        sd[f"diffusion_model.{name}.lora_B.weight"] = torch.randn(w.shape[0], 3, generator=g) * 0.1
    save_file(sd, str(path))


def test_turbo_adapter_switches_off_for_samples(tmp_path: Path):
    plain = load_transformer(TINY)
    x, t, caps = _inputs()
    with torch.no_grad():
        want_off = plain(x, t, caps, return_dict=False)[0][0]
    tr = load_transformer(TINY)
    _adapter_file(tmp_path / "a.safetensors", tr)
    kept = MergedAdapter()
    assert merge_lora_file(tr, tmp_path / "a.safetensors", keep=kept) == 2 and len(kept) == 2
    add_lora(tr, LoraConfig(rank=2, alpha=2, target_modules=["attention.to_q"]), seed=0)  # wraps a merged layer
    with torch.no_grad():
        on = tr(x, t, caps, return_dict=False)[0][0]
        with kept.off(tr) as n:
            off = tr(x, t, caps, return_dict=False)[0][0]
        again = tr(x, t, caps, return_dict=False)[0][0]
    assert n == 2
    assert not torch.allclose(on, want_off, atol=1e-4)
    assert torch.allclose(off, want_off, atol=1e-5)
    assert torch.equal(again, on)  # switched back on after the block


class _Tracked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.moves: list[str] = []

    def to(self, *args, **kwargs):
        self.moves.append(str(args[0]))
        return self


def test_vae_visits_the_device_only_while_sampling():
    from zlt.trainer.sampling import visiting

    vae = _Tracked()
    with pytest.raises(RuntimeError), visiting(vae, torch.device("cpu")):
        assert vae.moves == ["cpu"]
        raise RuntimeError("sampling failed")
    assert vae.moves == ["cpu", "cpu"]  # back in host memory even after an error


def test_training_with_float8_base_on_cpu(tmp_path: Path):
    from zlt.trainer.loop import Trainer

    data = make_images(tmp_path / "ds", n=3)
    cfg = tiny_config(tmp_path, data, model={"quantize": "float8"},
                      training={"max_steps": 3, "gradient_checkpointing": True, "compile": "off"})
    buf = io.StringIO()
    trainer = Trainer(cfg, EventWriter(buf, interval_s=0.0))
    trainer.setup()
    assert trainer.run() == "finished"
    events = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert any("float8 storage, fp32 compute" in e.get("message", "") for e in events)
    assert any("effective batch 2 = batch 2 x accumulation 1 x 1 device(s)" in e.get("message", "") for e in events)
    assert F8 in {p.dtype for p in trainer.transformer.parameters()}
    from zlt.trainer.timestep import TimestepFp32

    assert isinstance(trainer.model.module, TimestepFp32)  # what Fabric wraps: t passes its precision plugin boxed
    # the float8 text encoder's embeddings are cached under their own keys; the latents are shared
    plain = Trainer(tiny_config(tmp_path / "plain", data, cache={"dir": str(tmp_path / "cache")},
                                training={"max_steps": 1}), EventWriter(io.StringIO(), interval_s=0.0))
    plain.setup()
    stats = plain.data.stats
    assert stats.latents_cached == 3 and stats.latents_encoded == 0 and stats.texts_encoded == 4
    losses = [e["loss"] for e in events if e["type"] == "progress"]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)


def test_samples_are_drawn_with_the_training_adapter_off(tmp_path: Path):
    from zlt.trainer.loop import Trainer

    data = make_images(tmp_path / "ds", n=2)
    _adapter_file(tmp_path / "adapter.safetensors", load_transformer(TINY))
    cfg = tiny_config(tmp_path, data, model={"training_adapter": str(tmp_path / "adapter.safetensors")},
                      training={"max_steps": 2},
                      sample={"enable": True, "every": 2, "prompts": ["a boat"], "steps": 1, "width": 32, "height": 32})
    trainer = Trainer(cfg, EventWriter(io.StringIO(), interval_s=0.0))
    trainer.setup()
    assert len(trainer.adapter) == 2
    seen = []
    real_off = trainer.adapter.off

    class Spy(MergedAdapter):
        def off(self, transformer):
            seen.append(transformer is trainer.transformer)
            return real_off(transformer)

    trainer.adapter = Spy(trainer.adapter.factors)
    assert trainer.run() == "finished"
    assert seen == [True]  # one sampling pass (step 2), with the adapter switched off
    assert next(trainer.sampler.vae.parameters()).device.type == "cpu"  # the VAE is back in host memory
