"""The CLIP model behind the metrics: a local folder or a hub id, checked before anything is generated.

Loaded through transformers' CLIPModel (both towers, projected features). Offline (HF_HUB_OFFLINE=1) a hub id must
already be in the Hugging Face cache: nothing is ever downloaded then.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.core.constants import PICKLE_SUFFIXES
from zlt.core.errors import EnvNotReadyError

DEFAULT_CLIP = "openai/clip-vit-large-patch14"


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class ModelCheck:
    """What preflight says about one metric model."""

    name: str
    ok: bool
    source: str  # local | cache | download | missing
    message: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "source": self.source, "message": self.message, "hint": self.hint}


def _fix_hint(name: str) -> str:
    return (f"download it once (hf download {name}), or set eval.models.clip / --clip to a local folder "
            "holding a transformers CLIP model (config.json, weights, tokenizer, preprocessor_config.json)")


def clip_folder_problem(path: Path, *, need_weights: bool = False) -> str | None:
    """What keeps a local folder from being a CLIP model zlt loads (None: nothing). The weights must be
    .safetensors: ClipScorer never falls back to a pickle pytorch_model.bin (it can run code when loaded).
    `need_weights`: a folder with no weights file at all is refused too (a client's request, checked at submit)."""
    if not (path / "config.json").is_file():
        return "has no config.json: not a transformers model folder"
    if any(path.glob("*.safetensors")):
        return None
    if need_weights or any(f.suffix.lower() in PICKLE_SUFFIXES for f in path.iterdir()):
        return "holds no .safetensors weights (zlt never loads pickle .bin/.pt weights: they can run code)"
    return None


def check_clip(name: str) -> ModelCheck:
    """Is the CLIP model loadable without surprises? Never downloads."""
    path = Path(name).expanduser()
    if path.is_dir():
        problem = clip_folder_problem(path)
        if problem is None:
            return ModelCheck(name, True, "local", f"CLIP model folder {path}")
        return ModelCheck(name, False, "missing", f"{path} {problem}", _fix_hint(DEFAULT_CLIP))
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        return ModelCheck(name, False, "missing", f"CLIP model {name!r}: no such folder", _fix_hint(DEFAULT_CLIP))
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return ModelCheck(name, False, "missing", "huggingface_hub is not installed",
                          "pip install 'zlt[train]' (transformers brings huggingface_hub)")
    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return ModelCheck(name, True, "cache", f"CLIP model {name} is in the Hugging Face cache")
    if _offline():
        return ModelCheck(name, False, "missing",
                          f"CLIP model {name} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading",
                          _fix_hint(name))
    return ModelCheck(name, True, "download", f"CLIP model {name} is not cached; it will be downloaded on first use")


def require_clip(name: str) -> None:
    check = check_clip(name)
    if not check.ok:
        raise EnvNotReadyError(f"metric model: {check.message}", hint=check.hint)


class ClipScorer:
    """Projected CLIP embeddings of images and texts, in batches, on one device."""

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 16) -> None:
        require_clip(name)
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel
        from transformers.utils import logging as tf_logging

        local = Path(name).expanduser().is_dir() or _offline()
        src = str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name
        level = tf_logging.get_verbosity()
        tf_logging.set_verbosity_error()  # the "no torchvision, PIL image processor" notice is not the user's problem
        tf_logging.disable_progress_bar()
        try:
            # use_safetensors: never fall back to a pickle pytorch_model.bin (it can run code when loaded)
            self.model = CLIPModel.from_pretrained(src, local_files_only=local,
                                                   use_safetensors=True).eval().to(device)
            self.tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local)
            self.processor = AutoImageProcessor.from_pretrained(src, local_files_only=local)
        except (OSError, ValueError) as e:
            raise EnvNotReadyError(f"metric model: cannot load CLIP model {name}: {e}", hint=_fix_hint(name)) from e
        finally:
            tf_logging.set_verbosity(level)
            tf_logging.enable_progress_bar()
        self.name, self.device, self.batch_size, self.torch = name, device, batch_size, torch
        cfg = self.model.config.text_config
        self.max_length = int(getattr(cfg, "max_position_embeddings", 77))

    @staticmethod
    def _features(out: Any):
        # transformers >= 5 returns a model output whose pooler_output holds the projected features
        return out if hasattr(out, "shape") else out.pooler_output

    def images(self, images: list[Any]):
        import numpy as np

        rows = []
        with self.torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                batch = [im.convert("RGB") for im in images[i:i + self.batch_size]]
                px = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                rows.append(self._features(self.model.get_image_features(pixel_values=px)).float().cpu().numpy())
        return np.concatenate(rows, axis=0)

    def texts(self, texts: list[str]):
        import numpy as np

        rows = []
        with self.torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                tok = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                rows.append(self._features(self.model.get_text_features(**tok)).float().cpu().numpy())
        return np.concatenate(rows, axis=0)


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny, randomly initialised CLIP model saved as a transformers folder (tests, benches, the quick start).

    Its scores measure nothing about style; it exists so the whole evaluation path runs on a CPU offline."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    vocab: dict[str, int] = {}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    for tok in ("<|startoftext|>", "<|endoftext|>"):
        vocab[tok] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    eos = vocab["<|endoftext|>"]
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        CLIPModel(cfg).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
