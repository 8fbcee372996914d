"""Use a trained LoRA: text to image (`generate`) and style transfer (`transfer`) on Z-Image, from the registry.

Importing this package is cheap (names load on first use; torch and diffusers when a pipeline is first needed).
The public API (stable; documented in docs/generate.md):

    resolve_artifact(ref, home) -> ArtifactRef
    GenerateParams / TransferParams / LoraUse        strict request models (also the HTTP and MCP bodies)
    generate(params, home, cache=, save=) -> GenerationResult (.images PIL, .params per image, .folder)
    transfer(params, home, cache=, save=) -> GenerationResult
    PipelineCache(max_pipelines=1, max_adapters=4)   loaded pipelines kept between calls, LoRAs swapped
    read_png_params(path) -> dict                     the parameters a generated PNG carries
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "read_png_params": "zlt.infer.images",
    "GenerateParams": "zlt.infer.params", "LoraUse": "zlt.infer.params", "TransferParams": "zlt.infer.params",
    "PipelineCache": "zlt.infer.pipeline", "default_cache": "zlt.infer.pipeline",
    "ArtifactRef": "zlt.infer.resolve", "ResolvedLora": "zlt.infer.resolve", "resolve_artifact": "zlt.infer.resolve",
    "resolve_loras": "zlt.infer.resolve",
    "GenerationResult": "zlt.infer.run", "generate": "zlt.infer.run", "transfer": "zlt.infer.run",
    "with_trigger": "zlt.infer.run",
}

__all__ = [
    "ArtifactRef", "GenerateParams", "GenerationResult", "LoraUse", "PipelineCache", "ResolvedLora", "TransferParams",
    "default_cache", "generate", "read_png_params", "resolve_artifact", "resolve_loras", "transfer", "with_trigger",
]

if TYPE_CHECKING:
    from zlt.infer.images import read_png_params
    from zlt.infer.params import GenerateParams, LoraUse, TransferParams
    from zlt.infer.pipeline import PipelineCache, default_cache
    from zlt.infer.resolve import ArtifactRef, ResolvedLora, resolve_artifact, resolve_loras
    from zlt.infer.run import GenerationResult, generate, transfer, with_trigger


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zlt.infer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
