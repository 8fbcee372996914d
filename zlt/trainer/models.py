"""Load the base model (a diffusers folder, a hub id, or the tiny built-in one), merge the turbo training
adapter, and inject the LoRA we train.

Encoders and transformer load separately: the encoders only when the cache misses something, the transformer
after they are freed, so peak memory holds one of them, never both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError, EnvNotReadyError
from zlt.core.fsutil import sha256_json
from zlt.core.safetensors_guard import ensure_safetensors_path
from zlt.trainer.accel import float8_storage
from zlt.trainer.config import LoraConfig, ModelConfig, peft_target
from zlt.trainer.tiny import build_tiny_components, tiny_identity

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Encoders:
    """What the pre-pass needs: VAE + text encoder + tokenizer, inside a pipeline so prompts are encoded exactly
    as ZImagePipeline encodes them at inference."""

    pipe: Any  # ZImagePipeline with transformer=None


def model_identity(model: ModelConfig) -> str:
    """Cache-key part naming the encoders: the tiny model's definition, or the model path/id."""
    if model.is_tiny:
        return tiny_identity()
    return "model:" + sha256_json([model.name, model.weight_dtype])[:16]


def _from_pretrained_kwargs(model: ModelConfig) -> dict[str, Any]:
    if model.source == "modelscope" and not Path(model.name).expanduser().is_dir():
        raise BadInputError(
            f"model.base.name {model.name!r}: source 'modelscope' needs a local folder for the built-in trainer",
            hint="download it (modelscope download --model Tongyi-MAI/Z-Image-Turbo --local_dir DIR) and set "
            "model.base.name to DIR",
        )
    local = Path(model.name).expanduser().is_dir()
    # use_safetensors: never fall back to pickle .bin weights (they can run code when loaded).
    return {_dtype_kwarg(): torch_dtype(model.weight_dtype), "local_files_only": local or hub_offline(),
            "use_safetensors": True}


def _dtype_kwarg() -> str:
    """Newer diffusers take `dtype` and warn on `torch_dtype`; older ones know only `torch_dtype`."""
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def _load_error(model: ModelConfig, part: str, err: Exception) -> EnvNotReadyError:
    if Path(model.name).expanduser().is_dir():
        return EnvNotReadyError(
            f"cannot load the {part} from {model.name}: {err}",
            hint="the folder must be a diffusers Z-Image folder (model_index.json, transformer/, vae/, text_encoder/, tokenizer/)",
        )
    why = "HF_HUB_OFFLINE=1 forbids downloading and it is not in the Hugging Face cache" if hub_offline() else str(err)
    return EnvNotReadyError(
        f"model_download: cannot load the {part} of {model.name}: {why}",
        hint=f"download it first (hf download {model.name}) or set model.base.name to a local diffusers folder",
    )


def load_encoders(model: ModelConfig) -> Encoders:
    """VAE, text encoder and tokenizer (eval mode, frozen; the text encoder stored in float8 when quantised)."""
    if model.is_tiny:
        from diffusers import ZImagePipeline


        parts = build_tiny_components(transformer=False)
        pipe = ZImagePipeline(transformer=None, **parts)
    else:
        from diffusers import ZImagePipeline

        try:
            pipe = ZImagePipeline.from_pretrained(model.name, transformer=None, **_from_pretrained_kwargs(model))
        except (OSError, ValueError) as e:
            raise _load_error(model, "VAE and text encoder", e) from e
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.vae, pipe.text_encoder):
        part.requires_grad_(False)
        part.eval()
    if model.quantize == "float8":  # the caching pass then holds ~4 GB of Qwen3 weights instead of ~8

        float8_storage(pipe.text_encoder, torch_dtype(model.weight_dtype))
    return Encoders(pipe=pipe)


def load_sampling_parts(model: ModelConfig) -> tuple[Any, Any]:
    """(VAE, scheduler) for drawing samples when the pre-pass did not need the encoders (all cached)."""
    if model.is_tiny:
        parts = build_tiny_components(transformer=False)
        return parts["vae"], parts["scheduler"]
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler

    kwargs = _from_pretrained_kwargs(model)
    try:
        vae = AutoencoderKL.from_pretrained(model.name, subfolder="vae", **kwargs)
        sched = FlowMatchEulerDiscreteScheduler.from_pretrained(  # a scheduler has no weights: its JSON config only
            model.name, subfolder="scheduler", local_files_only=kwargs["local_files_only"])
    except (OSError, ValueError) as e:
        raise _load_error(model, "VAE", e) from e
    vae.requires_grad_(False)
    return vae.eval(), sched


def load_transformer(model: ModelConfig):
    """The frozen ZImageTransformer2DModel in the configured weight dtype (on the CPU)."""
    if model.is_tiny:
        tr = build_tiny_components(encoders=False)["transformer"]
        if model.weight_dtype != "fp32":
            tr = tr.to(torch_dtype(model.weight_dtype))
    else:
        from diffusers import ZImageTransformer2DModel

        try:
            tr = ZImageTransformer2DModel.from_pretrained(model.name, subfolder="transformer", **_from_pretrained_kwargs(model))
        except (OSError, ValueError) as e:
            raise _load_error(model, "transformer", e) from e
    tr.requires_grad_(False)
    return tr


def resolve_adapter(spec: str) -> Path:
    """A local .safetensors path, or 'owner/repo/file.safetensors' from the hub (cache only when offline)."""
    p = Path(spec).expanduser()
    if p.suffix.lower() != ".safetensors":
        raise BadInputError(f"model.base.training_adapter {spec!r}: only .safetensors files are loaded (pickle can run "
                            "code)", hint="give a local .safetensors path or 'owner/repo/file.safetensors'")
    if p.is_file():
        return p
    parts = spec.split("/")
    if len(parts) < 3 or p.suffix != ".safetensors":
        raise BadInputError(
            f"model.base.training_adapter {spec!r}: not a file",
            hint="give a local .safetensors path or 'owner/repo/file.safetensors'",
        )
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), local_files_only=hub_offline()))
    except Exception as e:  # the hub client raises several unrelated types for "not there"
        raise EnvNotReadyError(
            f"model_download: training adapter {spec} is not available: {e}",
            hint=f"download it (hf download {parts[0]}/{parts[1]} {'/'.join(parts[2:])}) or set "
            "model.base.training_adapter to a local file or 'none'",
        ) from e


def merge_lora_file(transformer, path: Path, keep=None) -> int:
    """Add a LoRA file's update (B @ A x scale) into the base weights; returns the number of merged layers.

    Any key layout diffusers reads for Z-Image works (diffusers, ai-toolkit `diffusion_model.`, kohya `lora_unet_`).
    `keep` (a `zlt.trainer.adapter.MergedAdapter`) receives the factors so the merge can be switched off later.
    """
    import torch
    from diffusers import ZImagePipeline


    ensure_safetensors_path(path)
    state, metadata = ZImagePipeline.lora_state_dict(str(path), return_lora_metadata=True, use_safetensors=True)
    scale = 1.0  # converted non-diffusers files have alpha folded in
    if metadata:
        meta = {k.removeprefix("transformer."): v for k, v in metadata.items()}
        if meta.get("r") and meta.get("lora_alpha"):
            scale = float(meta["lora_alpha"]) / float(meta["r"])
    modules = dict(transformer.named_modules())
    merged = 0
    for key, a in state.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key.removeprefix("transformer.").removesuffix(".lora_A.weight")
        b = state.get(key.replace(".lora_A.weight", ".lora_B.weight"))
        layer = modules.get(name)
        if b is None or layer is None or not hasattr(layer, "weight"):
            raise BadInputError(f"training adapter {path}: {name} does not match the transformer", hint="use an adapter made for Z-Image")
        with torch.no_grad():
            delta = (b.float() @ a.float()) * scale
            layer.weight.copy_((layer.weight.float() + delta.to(layer.weight.device)).to(layer.weight.dtype))
        if keep is not None:
            keep.factors[name] = (a.float().cpu(), b.float().cpu(), scale)
        merged += 1
    if merged == 0:
        raise BadInputError(f"training adapter {path}: no LoRA layers found", hint="use a Z-Image LoRA .safetensors")
    return merged


def add_lora(transformer, lora: LoraConfig, seed: int) -> list:
    """Inject our adapter ('default'); the base stays frozen; trainable params are fp32 for the optimizer."""
    import torch
    from peft import LoraConfig as PeftLoraConfig

    cfg = PeftLoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=peft_target(lora.target_modules),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # LoRA init depends on the seed only, not on what ran before
        transformer.add_adapter(cfg)
    params = [p for p in transformer.parameters() if p.requires_grad]
    if not params:
        raise BadInputError("model.lora.target_modules matched no layer of the transformer", hint="see docs/trainer.md for target names")
    for p in params:
        p.data = p.data.float()
    return params
