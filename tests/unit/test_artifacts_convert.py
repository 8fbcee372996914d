"""Key-format conversion: each upstream format parses to the same update, and every output format keeps it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fixtures.artifact_jobs import (
    TINY_SHAPES,
    ai_toolkit_state,
    diffusers_state,
    lora_arrays,
    musubi_state,
    save_state,
)
from zlt.core.errors import BadInputError
from zlt.lora.convert import (
    FORMATS,
    detect_format,
    effective_deltas,
    kohya_module_name,
    module_from_kohya,
    parse_lora,
    read_lora,
    render_lora,
)
from zlt.lora.safetensors_io import read_file, write_file


def _expected(arrays, scale=1.0):
    return {m: scale * (up @ down) for m, (down, up) in arrays.items()}


def _assert_deltas(weights, expected, rtol=1e-6, atol=1e-7):
    got = effective_deltas(weights)
    assert set(got) == set(expected)
    for m in expected:
        np.testing.assert_allclose(got[m], expected[m], rtol=rtol, atol=atol, err_msg=m)


@pytest.mark.parametrize("module", sorted(TINY_SHAPES))
def test_kohya_names_round_trip_for_every_tiny_module(module):
    assert module_from_kohya(kohya_module_name(module)) == module


def test_kohya_names_match_musubi_layout():
    assert kohya_module_name("layers.0.attention.to_out.0") == "layers_0_attention_to_out_0"
    assert kohya_module_name("layers.29.feed_forward.w1") == "layers_29_feed_forward_w1"
    assert module_from_kohya("noise_refiner_1_adaLN_modulation_0") == "noise_refiner.1.adaLN_modulation.0"


def test_unknown_underscored_module_cannot_be_written_as_kohya():
    with pytest.raises(BadInputError, match="kohya"):
        kohya_module_name("layers.0.my_custom_proj")


def test_detect_format(tmp_path):
    arrays = lora_arrays()
    assert detect_format(ai_toolkit_state(arrays)) == "ai-toolkit"
    assert detect_format(diffusers_state(arrays)) == "diffusers"
    assert detect_format(musubi_state(arrays, 1.0)) == "kohya"
    comfy = ai_toolkit_state(arrays) | {"diffusion_model.layers.0.attention.to_q.alpha": np.float32(4)}
    assert detect_format(comfy) == "comfyui"
    assert detect_format({"layers.0.attention.to_q.lora_A.weight": 0}) == "peft"
    with pytest.raises(BadInputError, match="mixes"):
        detect_format(list(ai_toolkit_state(arrays)) + list(diffusers_state(arrays)))
    with pytest.raises(BadInputError, match="unrecognised"):
        detect_format(["model.diffusion_model.input_blocks.0.weight"])


@pytest.mark.parametrize("dtype", ["F32", "F16"])
def test_ai_toolkit_file_parses_with_scale_one(tmp_path, dtype):
    arrays = lora_arrays(rank=4)
    p = save_state(tmp_path / "a.safetensors", ai_toolkit_state(arrays), dtype=dtype)
    weights, _ = read_lora(p)
    assert weights.source_format == "ai-toolkit" and weights.rank == 4
    assert all(m.alpha is None for m in weights.modules.values())
    tol = 1e-6 if dtype == "F32" else 2e-3
    _assert_deltas(weights, _expected(arrays), rtol=tol, atol=tol)


def test_musubi_alpha_is_applied(tmp_path):
    arrays = lora_arrays(rank=4)
    p = save_state(tmp_path / "m.safetensors", musubi_state(arrays, alpha=1.0))
    weights, _ = read_lora(p)
    assert weights.source_format == "kohya" and weights.alpha == 1.0
    assert set(weights.modules) == set(arrays)
    _assert_deltas(weights, _expected(arrays, scale=1.0 / 4))


def test_diffusers_adapter_metadata_scale_is_honoured(tmp_path):
    arrays = lora_arrays(rank=4)
    meta = {"lora_adapter_metadata": json.dumps({"transformer.r": 4, "transformer.lora_alpha": 8})}
    p = save_state(tmp_path / "d.safetensors", diffusers_state(arrays), meta)
    weights, _ = read_lora(p)
    _assert_deltas(weights, _expected(arrays, scale=2.0))


@pytest.mark.parametrize("source", ["ai-toolkit", "musubi", "diffusers"])
@pytest.mark.parametrize("target", FORMATS)
def test_every_conversion_keeps_the_update(tmp_path, source, target):
    arrays = lora_arrays(rank=4, seed=3)
    state, scale = {
        "ai-toolkit": (ai_toolkit_state(arrays), 1.0),
        "musubi": (musubi_state(arrays, alpha=2.0), 0.5),
        "diffusers": (diffusers_state(arrays), 1.0),
    }[source]
    weights, _ = read_lora(save_state(tmp_path / "src.safetensors", state))
    out = render_lora(weights, target)
    write_file(tmp_path / "out.safetensors", out, {})
    back, _ = read_lora(tmp_path / "out.safetensors")
    assert detect_format(out.keys()) == target
    _assert_deltas(back, _expected(arrays, scale), rtol=1e-5, atol=1e-7)


def test_output_key_layouts():
    arrays = lora_arrays(rank=2, modules=["layers.0.attention.to_out.0"])
    weights = parse_lora({k: _raw(v) for k, v in musubi_state(arrays, alpha=1.0).items()})
    assert sorted(render_lora(weights, "diffusers")) == [
        "transformer.layers.0.attention.to_out.0.lora_A.weight", "transformer.layers.0.attention.to_out.0.lora_B.weight",
    ]
    assert sorted(render_lora(weights, "comfyui")) == [
        "diffusion_model.layers.0.attention.to_out.0.alpha",
        "diffusion_model.layers.0.attention.to_out.0.lora_A.weight",
        "diffusion_model.layers.0.attention.to_out.0.lora_B.weight",
    ]
    assert sorted(render_lora(weights, "kohya")) == [
        "lora_unet_layers_0_attention_to_out_0.alpha",
        "lora_unet_layers_0_attention_to_out_0.lora_down.weight",
        "lora_unet_layers_0_attention_to_out_0.lora_up.weight",
    ]
    # comfyui/kohya keep the weights and the alpha; diffusers folds alpha/rank into them
    assert render_lora(weights, "kohya")["lora_unet_layers_0_attention_to_out_0.lora_up.weight"] == weights.modules[
        "layers.0.attention.to_out.0"].up
    assert render_lora(weights, "comfyui")["diffusion_model.layers.0.attention.to_out.0.alpha"].to_float32() == 1.0


def test_bf16_source_stays_bf16(tmp_path):
    arrays = lora_arrays(rank=4)
    p = save_state(tmp_path / "b.safetensors", musubi_state(arrays, alpha=4.0), dtype="BF16")
    weights, _ = read_lora(p)
    out = render_lora(weights, "diffusers")  # alpha == rank: nothing to fold, bytes pass through
    key = "transformer.layers.0.attention.to_q.lora_B.weight"
    assert out[key].dtype == "BF16" and out[key] == weights.modules["layers.0.attention.to_q"].up
    tensors, _ = read_file(p)
    assert tensors["lora_unet_layers_0_attention_to_q.lora_up.weight"].data == out[key].data


def test_incomplete_and_unsupported_files_are_errors(tmp_path):
    arrays = lora_arrays(rank=2, modules=["layers.0.attention.to_q"])
    state = ai_toolkit_state(arrays)
    state.pop("diffusion_model.layers.0.attention.to_q.lora_B.weight")
    with pytest.raises(BadInputError, match="no up"):
        read_lora(save_state(tmp_path / "half.safetensors", state))
    state = ai_toolkit_state(arrays) | {"diffusion_model.layers.0.attention.to_q.dora_scale": np.ones(2, np.float32)}
    with pytest.raises(BadInputError, match="unsupported LoRA key") as exc:
        read_lora(save_state(tmp_path / "dora.safetensors", state))
    assert "dora.safetensors" in exc.value.message


def _raw(a):
    from zlt.lora.safetensors_io import RawTensor

    return RawTensor.from_float32(np.asarray(a, dtype=np.float32), "F32")
