"""Prompts encoded before the transformer loads, so the text encoder and the transformer are never resident together.

At real size the text encoder (Qwen3-4B, 8 GB in bf16) and the transformer (12.3 GB) loaded as one pipeline peaked
at 19.2 GiB resident on a CPU host (bench/realsize.py). Where a real model runs on the CPU (no CUDA), `generate`
and `transfer` do what training does: load the text encoder and tokenizer (the trainer's `load_encoders`), encode
every prompt with the trainer's `PipelineEncoder` (exactly as ZImagePipeline encodes them), free the encoder
(gc + malloc_trim), then load the pipeline without its text encoder and draw with `prompt_embeds=`. The tiny model
and CUDA (where offload already moves the text encoder off the GPU) keep the whole pipeline.

A long-lived worker keeps the loaded transformer between requests (the PipelineCache); a later request then
encodes its prompts while that transformer stays loaded. The one-shot `zlt generate` never holds both.
"""

from __future__ import annotations

import gc
from typing import Any

from zlt.core.constants import TINY_MODEL
from zlt.trainer.cache import TEXT_BATCH, PipelineEncoder
from zlt.trainer.config import ModelConfig
from zlt.trainer.memstats import return_freed_memory
from zlt.trainer.models import load_encoders

FREED = "freed before the transformer loaded"
LOADED = "loaded with the pipeline"


def keeps_text_encoder(base_model: dict[str, Any], plan: Any) -> bool:
    """Whether the pipeline loads with its text encoder: False for a real model planned on the CPU."""
    return base_model.get("name") == TINY_MODEL or plan.device != "cpu"


def texts_to_encode(prompts: list[str], negative_prompt: str | None, guidance: float) -> list[str]:
    """Every text the pipeline would encode: the prompts, and with guidance the negative prompt ('' when none)."""
    texts = list(prompts) + ([negative_prompt or ""] if guidance > 0 else [])
    return list(dict.fromkeys(texts))


def encode_alone(base_model: dict[str, Any], plan: Any, texts: list[str]) -> dict[str, Any]:
    """text -> its embedding (seq, dim) in the plan's dtype, from the text encoder loaded alone and freed before
    this returns (nothing of it stays referenced)."""
    import torch

    source = base_model.get("source") or "huggingface"
    model = ModelConfig(name=str(base_model["name"]), source=source if source != "builtin" else "huggingface",
                        weight_dtype=plan.dtype)
    encoders = load_encoders(model)
    encoder = PipelineEncoder(encoders.pipe, plan.device)
    dtype = encoders.pipe.text_encoder.dtype
    out: dict[str, Any] = {}
    for start in range(0, len(texts), TEXT_BATCH):
        chunk = texts[start:start + TEXT_BATCH]
        out.update((t, e.to(dtype)) for t, e in zip(chunk, encoder.encode_texts(chunk), strict=True))
    del encoder, encoders
    gc.collect()
    return_freed_memory()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def encode_first(art: Any, plan: Any, prompts: list[str], negative: str | None, guidance: float,
                 notice: Any = None) -> dict[str, Any] | None:
    """None where the pipeline keeps its text encoder; else the embeddings, the text encoder already freed.
    `notice(line)` hears what is happening."""
    if keeps_text_encoder(art.base_model, plan):
        return None
    if notice is not None:
        notice(f"encoding the prompts with the text encoder of {art.base_name} alone; it is freed before the "
               "transformer loads")
    return encode_alone(art.base_model, plan, texts_to_encode(prompts, negative, guidance))


def text_kwargs(prompt: str, negative_prompt: str | None, guidance: float,
                embeds: dict[str, Any] | None) -> dict[str, Any]:
    """The pipeline call's text arguments: the prompt itself, or its embeddings when they were encoded beforehand."""
    if embeds is None:
        return {"prompt": prompt, "negative_prompt": negative_prompt}
    negative = [embeds[negative_prompt or ""]] if guidance > 0 else None
    return {"prompt": None, "prompt_embeds": [embeds[prompt]], "negative_prompt_embeds": negative}
