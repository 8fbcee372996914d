"""`zlt/tiny-zimage`: a tiny, seeded, randomly initialised Z-Image pipeline built in memory.

It has the real architecture (ZImageTransformer2DModel, a Qwen3 text encoder, AutoencoderKL with the real
scaling/shift and 8x downsampling, a byte-level Qwen2 tokenizer with a chat template) at toy sizes, so the whole
trainer runs on a CPU in seconds with nothing downloaded. It is a smoke test: a LoRA trained on it learns nothing
useful about any style, and every artifact made from it says so (`zlt.tiny_model` metadata).
"""

from __future__ import annotations

from typing import Any

from zlt.core.fsutil import sha256_json

TINY_SEED = 0  # fixed, independent of the training seed, so cached latents stay valid across runs
TINY_LABEL = "zlt/tiny-zimage: tiny random test model; its LoRA is a smoke test, not a useful style"

TRANSFORMER_CONFIG: dict[str, Any] = dict(
    in_channels=16, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=16,
    axes_dims=[8, 4, 4], axes_lens=[256, 32, 32],
)
TEXT_ENCODER_CONFIG: dict[str, Any] = dict(
    hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
    head_dim=8, max_position_embeddings=1024,
)
VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8], norm_num_groups=4,
    layers_per_block=1, latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, sample_size=64,
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
# Qwen3's chat layout, which ZImagePipeline asks for through apply_chat_template.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer():
    """A Qwen2Tokenizer over the 256 byte-level symbols plus Qwen's special tokens, no merges, no files."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=[], chat_template=CHAT_TEMPLATE, additional_special_tokens=SPECIAL_TOKENS[1:])


def build_tiny_components(seed: int = TINY_SEED, *, transformer: bool = True, encoders: bool = True) -> dict[str, Any]:
    """The pipeline's parts; each part is drawn from its own seeded stream so asking for a subset gives the
    same weights as building all of them."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    parts: dict[str, Any] = {"scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0)}
    fork = torch.random.fork_rng(devices=[])
    with fork:
        if encoders:
            tokenizer = build_tiny_tokenizer()
            torch.manual_seed(seed)
            parts["text_encoder"] = Qwen3Model(Qwen3Config(vocab_size=len(tokenizer), **TEXT_ENCODER_CONFIG)).eval()
            torch.manual_seed(seed + 1)
            parts["vae"] = AutoencoderKL(**VAE_CONFIG).eval()
            parts["tokenizer"] = tokenizer
        if transformer:
            torch.manual_seed(seed + 2)
            parts["transformer"] = ZImageTransformer2DModel(**TRANSFORMER_CONFIG)
    return parts


def build_tiny_pipeline(seed: int = TINY_SEED):
    """The whole tiny ZImagePipeline (for tests, samples and LoRA checks), progress bar off."""
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline(**build_tiny_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_identity(seed: int = TINY_SEED) -> str:
    """Part of every cache key: changes when the tiny model's definition changes."""

    return "tiny:" + sha256_json([seed, TRANSFORMER_CONFIG, TEXT_ENCODER_CONFIG, VAE_CONFIG, CHAT_TEMPLATE])[:16]
