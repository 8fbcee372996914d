"""Numeric round trip through a real (tiny) diffusers Z-Image transformer.

A LoRA is trained-in by hand (peft, alpha != rank), saved the way each upstream trainer saves it, collected by
zlt, exported to every format, and loaded back with `ZImagePipeline.load_lora_weights`: the transformer's output
must equal the output of the model the LoRA came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the [train] extra (torch)")
pytest.importorskip("diffusers", reason="needs the [train] extra (diffusers)")
pytest.importorskip("peft", reason="needs the [train] extra (peft)")

from tests.fixtures.artifact_jobs import make_job_dir  # noqa: E402
from zlt.artifacts import collect_artifact, export_artifact  # noqa: E402
from zlt.lora.safetensors_io import RawTensor, read_file  # noqa: E402

pytestmark = pytest.mark.train

RANK, ALPHA = 4, 8.0  # scale 2: a converter that drops alpha fails


def _tiny():
    from diffusers import ZImageTransformer2DModel

    torch.manual_seed(0)
    return ZImageTransformer2DModel(
        in_channels=16, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=16,
        axes_dims=[8, 4, 4], axes_lens=[256, 32, 32],
    ).eval()


def _run(model):
    g = torch.Generator().manual_seed(2)
    x = [torch.randn(16, 1, 8, 8, generator=g)]
    cap = [torch.randn(7, 16, generator=g)]
    with torch.no_grad():
        return model(x, torch.tensor([0.5]), cap).sample[0]


@pytest.fixture(scope="module")
def trained():
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model = _tiny()
    model.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["to_q", "to_k", "to_v", "to_out.0", "w1", "w2", "w3"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # peft initialises B to zero: give the LoRA an effect
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    return {"state": state, "config": model.peft_config["default"].to_dict(), "reference": _run(model),
            "base": _run(_tiny())}


def _write_upstream(path: Path, fmt: str, trained: dict, dtype) -> None:
    from diffusers import ZImagePipeline
    from safetensors.torch import save_file

    state = {k: v.to(dtype) for k, v in trained["state"].items()}
    if fmt == "diffusers":  # diffusers' own writer, with peft's adapter metadata (lora_alpha 8, r 4)
        ZImagePipeline.save_lora_weights(
            path.parent / "dl", transformer_lora_layers=state, transformer_lora_adapter_metadata=trained["config"]
        )
        (path.parent / "dl" / "pytorch_lora_weights.safetensors").rename(path)
    elif fmt == "ai-toolkit":  # no alpha keys: ai-toolkit's files load with scale 1, so B carries alpha/rank
        out = {}
        for k, v in state.items():
            out["diffusion_model." + k] = v * (ALPHA / RANK) if ".lora_B." in k else v
        save_file(out, str(path), metadata={"training_info": json.dumps({"step": 1000, "epoch": 1}), "format": "pt"})
    else:  # musubi: lora_unet_ keys, lora_down/up, alpha per module
        out = {}
        for k, v in state.items():
            mod, kind = k.rsplit(".lora_", 1)
            base = "lora_unet_" + mod.replace(".", "_")
            out[f"{base}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = v
            out[f"{base}.alpha"] = torch.tensor(ALPHA, dtype=dtype)
        save_file(out, str(path), metadata={"modelspec.architecture": "Z-Image/lora", "ss_network_dim": str(RANK)})


def _load_and_run(path: Path):
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=_tiny())
    pipe.load_lora_weights(str(path))
    return _run(pipe.transformer)


@pytest.mark.parametrize("fmt", ["diffusers", "ai-toolkit", "musubi"])
def test_collected_and_exported_loras_reproduce_the_trained_model(tmp_path, zlt_home, trained, fmt):
    assert (trained["reference"] - trained["base"]).abs().max() > 1e-2  # the LoRA does something
    job = make_job_dir(tmp_path, fmt={"musubi": "musubi", "ai-toolkit": "ai-toolkit", "diffusers": "diffusers"}[fmt],
                       steps=())
    _write_upstream(job / "output" / "watercolor.safetensors", fmt, trained, torch.float32)
    rec = collect_artifact(job, home=zlt_home)
    outputs = {"lora.safetensors": _load_and_run(rec.path / "lora.safetensors")}
    for target in ("comfyui", "kohya", "diffusers"):
        outputs[target] = _load_and_run(export_artifact(zlt_home, rec.id, target, tmp_path / "exports"))
    for name, out in outputs.items():
        torch.testing.assert_close(out, trained["reference"], rtol=1e-4, atol=1e-5, msg=f"{fmt} -> {name}")


def test_bf16_checkpoint_round_trip(tmp_path, zlt_home, trained):
    job = make_job_dir(tmp_path, fmt="musubi", steps=())
    _write_upstream(job / "output" / "watercolor.safetensors", "musubi", trained, torch.bfloat16)
    rec = collect_artifact(job, home=zlt_home)
    tensors, _ = read_file(rec.path / "lora.safetensors")
    assert {t.dtype for t in tensors.values()} == {"BF16"}  # folding alpha keeps the trainer's dtype
    out = _load_and_run(rec.path / "lora.safetensors")
    # bf16 weights: compare the LoRA's effect, not bit equality
    effect, ref_effect = out - trained["base"], trained["reference"] - trained["base"]
    assert (effect - ref_effect).abs().max() < 0.02 * ref_effect.abs().max()


def test_bf16_encoding_matches_torch():
    import numpy as np

    a = torch.randn(64, 33) * 10
    ours = RawTensor.from_float32(a.numpy(), "BF16")
    theirs = a.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    assert ours.data == theirs
    back = ours.to_float32()
    np.testing.assert_array_equal(back, a.to(torch.bfloat16).to(torch.float32).numpy())
