"""The captioners zlt offers, as a registry: a *family* says how a model is loaded, prompted and decoded; a
*captioner* is one model of a family with its memory need and generation settings.

Every real model is loaded from the local disk only (a folder, or the Hugging Face cache: `local_files_only`), with
`use_safetensors=True`, in bf16 (fp16 on a GPU without bf16, fp32 on the CPU), and captions a batch of images per
`generate` call. A model that is not there fails fast (EnvNotReadyError, exit 3) with the command that downloads it;
`zlt preflight` says so before a job starts (zlt.preflight.captioner).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.constants import DEFAULT_CAPTIONER, TINY_CAPTIONER
from zlt.core.errors import BadInputError, EnvNotReadyError


@dataclass(frozen=True)
class Family:
    """How the models of one architecture are driven."""

    name: str
    takes_instructions: bool  # a free-text instruction (Qwen2.5-VL), or only fixed task tokens (Florence-2)
    model_class: str  # the transformers class that loads it
    model_type: str  # config.json's model_type


FAMILIES: dict[str, Family] = {
    "florence2": Family("florence2", False, "Florence2ForConditionalGeneration", "florence2"),
    "qwen2_5_vl": Family("qwen2_5_vl", True, "Qwen2_5_VLForConditionalGeneration", "qwen2_5_vl"),
}


@dataclass(frozen=True)
class CaptionerInfo:
    name: str  # what a spec or --model names
    family: str
    params_b: float  # parameters, billions
    vram_gb: float  # peak GPU memory while captioning a batch (weights in bf16 + activations), estimated
    download_gb: float
    batch_size: int  # images per generate call on a GPU
    generate: dict[str, Any] = field(default_factory=dict)  # generate() keywords; the model's own config otherwise
    note: str = ""

    @property
    def is_tiny(self) -> bool:
        return self.name == TINY_CAPTIONER

    @property
    def takes_instructions(self) -> bool:
        return FAMILIES[self.family].takes_instructions

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "params_b": self.params_b, "vram_gb": self.vram_gb,
                "download_gb": self.download_gb, "takes_instructions": self.takes_instructions, "note": self.note}


_FLORENCE = {"max_new_tokens": 256, "num_beams": 3, "do_sample": False}  # the model card's settings
_QWEN = {"max_new_tokens": 160, "do_sample": False}
KNOWN: dict[str, CaptionerInfo] = {c.name: c for c in (
    CaptionerInfo(TINY_CAPTIONER, "florence2", 0.0001, 0.0, 0.0, 4,
                  note="tiny random Florence-2 built from a config: readable words, no meaning (tests, demos)"),
    CaptionerInfo(DEFAULT_CAPTIONER, "florence2", 0.77, 3.0, 1.6, 16, _FLORENCE,
                  note="default: detailed, literal captions from a 0.77B model"),
    CaptionerInfo("florence-community/Florence-2-base", "florence2", 0.23, 1.5, 0.5, 32, _FLORENCE,
                  note="smaller Florence-2: faster, less detail"),
    CaptionerInfo("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", 3.8, 10.0, 7.5, 8, _QWEN,
                  note="follows instructions (content only, no style words) at 5x Florence-2 large's size"),
    CaptionerInfo("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", 8.3, 19.0, 16.6, 4, _QWEN,
                  note="best instruction following; 10x Florence-2 large's size"),
)}


def known_captioners() -> list[CaptionerInfo]:
    return list(KNOWN.values())


def _config_of(name: str) -> dict[str, Any] | None:
    """config.json of a local model folder, or of a hub model in the Hugging Face cache; None if neither."""
    try:
        folder = Path(name).expanduser()
        path: Any = folder / "config.json" if folder.is_dir() else None
        if path is None and name.count("/") == 1:
            from huggingface_hub import try_to_load_from_cache  # lazy: pulls huggingface_hub

            path = try_to_load_from_cache(name, "config.json")
        return json.loads(Path(path).read_text(encoding="utf-8")) if isinstance(path, (str, Path)) else None
    except (OSError, ValueError, RuntimeError):  # an unreadable folder, a bad repo id, `~nosuchuser`
        return None


def captioner_info(name: str, field_name: str = "caption.model") -> CaptionerInfo:
    """The captioner `name` names: a known one, or a model of a known family (its config.json's model_type) in a
    local folder or the Hugging Face cache."""
    if name in KNOWN:
        return KNOWN[name]
    config = _config_of(name)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    family = next((f for f in FAMILIES.values() if f.model_type == model_type), None)
    if family is None:
        known = ", ".join(KNOWN)
        what = f"a {model_type!r} model" if model_type else "not a known captioner nor a local model folder"
        raise BadInputError(f"{field_name}: {name!r} is {what}",
                            hint=f"use one of {known}, or a Florence-2 / Qwen2.5-VL model on this machine")
    local = Path(name).expanduser()
    size = sum(p.stat().st_size for p in local.glob("*.safetensors")) / (1 << 30) if local.is_dir() else 2.0
    return CaptionerInfo(str(local.resolve()) if local.is_dir() else name, family.name, 0.0,
                         round(size * 1.2 + 1.0, 1), 0.0, 8, dict(_FLORENCE if family.name == "florence2" else _QWEN),
                         note=f"a {family.name} model")


def pick_dtype(device: str) -> Any:
    import torch  # lazy: pulls torch

    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class Loaded:
    """A captioner ready to run: its model and processor on a device."""

    info: CaptionerInfo
    model: Any
    processor: Any
    device: str
    dtype: Any
    revision: str

    def inputs(self, images: list[Any], prompt: str) -> dict[str, Any]:
        """The processor's tensors for one batch, on the model's device and dtype."""
        return INPUTS[self.info.family](self, images, prompt)

    def decode(self, out: Any, inputs: dict[str, Any]) -> list[str]:
        return DECODE[self.info.family](self, out, inputs)

    def caption(self, images: list[Any], prompt: str) -> list[str]:
        """The raw text the model writes for each image of one batch."""
        import torch  # lazy: pulls torch

        inputs = self.inputs(images, prompt)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self.info.generate)
        return self.decode(out, inputs)


def _florence_inputs(c: Loaded, images: list[Any], prompt: str) -> dict[str, Any]:
    batch = c.processor(text=[prompt] * len(images), images=images, return_tensors="pt")
    batch = batch.to(c.device)
    batch["pixel_values"] = batch["pixel_values"].to(c.dtype)
    return dict(batch)


def _florence_decode(c: Loaded, out: Any, inputs: dict[str, Any]) -> list[str]:
    # Florence-2's caption tasks are "pure text": the decoded sequence without its special tokens.
    return [t.strip() for t in c.processor.batch_decode(out, skip_special_tokens=True)]


def _qwen_inputs(c: Loaded, images: list[Any], prompt: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = c.processor.apply_chat_template(messages, add_generation_prompt=True)
    c.processor.tokenizer.padding_side = "left"  # batched generation continues every row from its own end
    batch = c.processor(text=[text] * len(images), images=images, padding=True, return_tensors="pt").to(c.device)
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(c.dtype)
    return dict(batch)


def _qwen_decode(c: Loaded, out: Any, inputs: dict[str, Any]) -> list[str]:
    new = out[:, inputs["input_ids"].shape[1]:]  # only what the model wrote after the prompt
    return [t.strip() for t in c.processor.batch_decode(new, skip_special_tokens=True)]


INPUTS: dict[str, Callable[[Loaded, list[Any], str], dict[str, Any]]] = {
    "florence2": _florence_inputs, "qwen2_5_vl": _qwen_inputs}
DECODE: dict[str, Callable[[Loaded, Any, dict[str, Any]], list[str]]] = {
    "florence2": _florence_decode, "qwen2_5_vl": _qwen_decode}


def device_for(gpu: int | None) -> str:
    """`cuda:N` for the job's GPU when CUDA is there, else the CPU (also without torch: loading then says so)."""
    try:
        import torch  # lazy: pulls torch
    except ImportError:
        return "cpu"
    if gpu is not None and torch.cuda.is_available():
        return f"cuda:{gpu}"
    return "cuda:0" if gpu is None and torch.cuda.is_available() else "cpu"


def load_captioner(name: str, *, device: str = "cpu", field_name: str = "caption.model") -> Loaded:
    """Load a captioner from the local disk (never downloaded here). EnvNotReadyError with the download command
    when a hub model is not in the cache, or naming the extra when torch/transformers are not installed."""
    info = captioner_info(name, field_name)
    try:
        return _load(info, device, field_name)
    except ImportError as e:
        raise EnvNotReadyError(f"captioning needs torch and transformers ({e.name or e} is not installed)",
                               hint="pip install 'zlt[train]'") from None


def _load(info: CaptionerInfo, device: str, field_name: str) -> Loaded:
    dtype = pick_dtype(device)
    if info.is_tiny:
        from zlt.caption.tiny import REVISION, build_tiny  # lazy: pulls transformers

        model, processor = build_tiny(device, dtype)
        return Loaded(info, model, processor, device, dtype, REVISION)
    import transformers  # lazy: pulls transformers

    cls = getattr(transformers, FAMILIES[info.family].model_class)
    try:
        processor = transformers.AutoProcessor.from_pretrained(info.name, local_files_only=True)
        model = cls.from_pretrained(info.name, dtype=dtype, use_safetensors=True, local_files_only=True)
    except OSError as e:
        raise EnvNotReadyError(f"{field_name}: captioner {info.name} is not on this machine ({e.__class__.__name__})",
                               hint=f"download it first: hf download {info.name}") from None
    model.eval().to(device)
    revision = getattr(model.config, "_commit_hash", None) or "local"
    return Loaded(info, model, processor, device, dtype, str(revision))
