"""Write a random-weight Z-Image folder in diffusers layout, shard by shard (bench/realsize.py's first stage).

Nothing is downloaded. Each component is built on the `meta` device (no memory) to learn its tensor names and
shapes, then each shard is filled with random values, written with safetensors and freed before the next, so
writing the 12.3 GB transformer holds one shard (<= 2 GB) at a time. Config values:

- transformer: `ZImageTransformer2DModel()`'s defaults (the real architecture: dim 3840, 30 layers, 2 + 2
  refiners, 30 heads, cap_feat_dim 2560);
- text encoder: Qwen3-4B as Z-Image-Turbo's `text_encoder/config.json` gives it (hidden 2560, 36 layers, 32 heads,
  8 KV heads, head_dim 128, intermediate 9728, vocab 151936, rope theta 1e6, tied embeddings), loaded as
  `Qwen3Model`;
- VAE: the Flux VAE (`AutoencoderKL`, 16 latent channels, blocks 128/256/512/512, scaling 0.3611, shift 0.1159,
  no quant convs);
- tokenizer: a stand-in `Qwen2Tokenizer` with the real vocabulary size (151,643 regular tokens: the 256 byte
  symbols plus fillers, then Qwen's special tokens) and the chat template; no merges, so it tokenises byte by byte;
- scheduler: `FlowMatchEulerDiscreteScheduler(shift=3.0)`.

Random values: norm weights 1, biases 0, embeddings N(0, 0.02), other weights N(0, 1/fan_in) so activations keep
their scale through 30 layers and the loss stays finite.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

SHARD_BYTES = 2 * 10**9
SMALL_SHARD_BYTES = 4 * 10**6  # --scale small still writes several shards and an index
MARKER = "zlt-realsize.json"  # written last: a folder without it is incomplete and is written again

QWEN3_4B: dict[str, Any] = {  # Tongyi-MAI/Z-Image-Turbo text_encoder/config.json
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2560,
    "initializer_range": 0.02, "intermediate_size": 9728, "max_position_embeddings": 40960, "max_window_layers": 36,
    "model_type": "qwen3", "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None,
    "tie_word_embeddings": True, "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}
FLUX_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
    "act_fn": "silu", "latent_channels": 16, "norm_num_groups": 32, "sample_size": 1024, "scaling_factor": 0.3611,
    "shift_factor": 0.1159, "use_quant_conv": False, "use_post_quant_conv": False, "force_upcast": True,
    "mid_block_add_attention": True,
}
REGULAR_TOKENS = 151643  # Qwen's byte-level BPE vocabulary; the special tokens follow from id 151643
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
                  "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                  "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>"]
MODEL_INDEX = {
    "_class_name": "ZImagePipeline", "_diffusers_version": "0.36.0",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "Qwen3Model"],
    "tokenizer": ["transformers", "Qwen2Tokenizer"], "transformer": ["diffusers", "ZImageTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
# --scale small: the same code paths in seconds (dim 256, 2 layers); the vocabulary stays real
SMALL = {
    "transformer": dict(dim=256, n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=64,
                        axes_dims=[32, 48, 48]),
    "text_encoder": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=32, max_window_layers=2),
    "vae": dict(block_out_channels=[32, 32, 32, 32], layers_per_block=1),
}


def component_configs(scale: str) -> dict[str, dict[str, Any]]:
    small = scale == "small"
    return {"transformer": dict(SMALL["transformer"]) if small else {},
            "text_encoder": {**QWEN3_4B, **(SMALL["text_encoder"] if small else {})},
            "vae": {**FLUX_VAE, **(SMALL["vae"] if small else {})}}


def _meta_model(kind: str, cfg: dict[str, Any]):
    import torch

    with torch.device("meta"):
        if kind == "transformer":
            from diffusers import ZImageTransformer2DModel

            return ZImageTransformer2DModel(**cfg)
        if kind == "vae":
            from diffusers import AutoencoderKL

            return AutoencoderKL(**cfg)
        from transformers import Qwen3Config, Qwen3Model

        return Qwen3Model(Qwen3Config(**cfg))


def _fill(name: str, shape: tuple[int, ...], gen) -> Any:
    """Random values as described in the module docstring, drawn on the generator's device, returned on the CPU."""
    import torch

    leaf = name.rsplit(".", 1)[-1]
    if "norm" in name and leaf == "weight":
        return torch.ones(shape, dtype=torch.bfloat16)
    if leaf == "bias" or len(shape) == 0:
        return torch.zeros(shape, dtype=torch.bfloat16)
    t = torch.randn(shape, generator=gen, dtype=torch.bfloat16, device=gen.device)
    if "embed_tokens" in name or len(shape) == 1:
        return t.mul_(0.02).cpu()
    fan_in = 1
    for s in shape[1:]:
        fan_in *= s
    return t.mul_(fan_in ** -0.5).cpu()


def _write_weights(model, folder: Path, stem: str, index_name: str, seed: int, shard_bytes: int) -> dict[str, int]:
    """Shards of at most SHARD_BYTES (bf16) with their index, or one file when it fits; returns counts."""
    import torch
    from safetensors.torch import save_file

    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for k, shape in shapes:
        n = 2 * int(torch.Size(shape).numel())
        if shards[-1] and size + n > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((k, shape))
        size += n
    gen = torch.Generator("cuda" if torch.cuda.is_available() else "cpu").manual_seed(seed)  # a GPU draws faster
    total = sum(2 * int(torch.Size(s).numel()) for _, s in shapes)
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards):
        fname = f"{stem}.safetensors" if len(shards) == 1 else f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {k: _fill(k, shape, gen) for k, shape in shard}
        save_file(tensors, str(folder / fname), metadata={"format": "pt"})
        del tensors
        weight_map.update({k: fname for k, _ in shard})
    if len(shards) > 1:
        (folder / index_name).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return {"tensors": len(shapes), "shards": len(shards), "bytes": total,
            "params": sum(int(torch.Size(s).numel()) for _, s in shapes)}


def write_tokenizer(folder: Path) -> int:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    from zlt.trainer.tiny import CHAT_TEMPLATE

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    for i in range(len(vocab), REGULAR_TOKENS):
        vocab[f"<zlt_filler_{i}>"] = i
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], chat_template=CHAT_TEMPLATE, additional_special_tokens=SPECIAL_TOKENS[1:])
    tok.save_pretrained(str(folder))
    return len(tok)


def write_model(root: Path, scale: str, log=print) -> dict[str, Any]:
    """Write (or reuse) the folder; returns what it holds per component."""
    marker = root / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("scale") == scale:
            log(f"reusing {root} ({scale})")
            return {**info, "reused": True}
    from diffusers import FlowMatchEulerDiscreteScheduler

    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cfgs = component_configs(scale)
    info: dict[str, Any] = {"scale": scale, "components": {}}
    layout = {"transformer": ("diffusion_pytorch_model", "diffusion_pytorch_model.safetensors.index.json"),
              "text_encoder": ("model", "model.safetensors.index.json"),
              "vae": ("diffusion_pytorch_model", "diffusion_pytorch_model.safetensors.index.json")}
    for seed, (kind, (stem, index)) in enumerate(layout.items()):
        t = time.monotonic()
        folder = root / kind
        folder.mkdir(exist_ok=True)
        model = _meta_model(kind, cfgs[kind])
        if kind == "text_encoder":
            model.config.save_pretrained(str(folder))
        else:
            model.save_config(str(folder))
        counts = _write_weights(model, folder, stem, index, seed, SHARD_BYTES if scale == "real" else SMALL_SHARD_BYTES)
        del model
        info["components"][kind] = {**counts, "seconds": round(time.monotonic() - t, 1)}
        log(f"wrote {kind}: {counts['params'] / 1e9:.3f} B parameters, {counts['bytes'] / 1e9:.2f} GB in "
            f"{counts['shards']} file(s), {time.monotonic() - t:.0f} s")
    info["tokenizer_size"] = write_tokenizer(root / "tokenizer")
    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False).save_pretrained(
        str(root / "scheduler"))
    (root / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    info["write_seconds"] = round(time.monotonic() - t0, 1)
    marker.write_text(json.dumps(info, indent=2))
    return {**info, "reused": False}
