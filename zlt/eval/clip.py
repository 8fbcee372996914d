"""The CLIP model behind the metrics: a local folder, a hub id, or the built-in `zlt/tiny-clip`.

Loaded through transformers' CLIPModel (both towers, projected features). Whether it can be loaded is checked
first (zlt.preflight.clip_model): a cached hub id is then read from the cache alone (local_files_only, no network
call), and a hub id that is not cached is refused at once when the hub cannot be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.core.errors import EnvNotReadyError
from zlt.preflight.clip_model import fix_hint, require_clip


class ClipScorer:
    """Projected CLIP embeddings of images and texts, in batches, on one device."""

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 16) -> None:
        check = require_clip(name)
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel
        from transformers.utils import logging as tf_logging

        level = tf_logging.get_verbosity()
        tf_logging.set_verbosity_error()  # the "no torchvision, PIL image processor" notice is not the user's problem
        tf_logging.disable_progress_bar()
        try:
            if check.source == "builtin":
                model, self.tokenizer, self.processor = tiny_clip_parts()
                self.model = model.to(device)
            else:
                local = check.source != "download"  # a folder or the cache: never ask the network (no retries)
                src = str(Path(name).expanduser()) if check.source == "local" else name
                # use_safetensors: never fall back to a pickle pytorch_model.bin (it can run code when loaded)
                self.model = CLIPModel.from_pretrained(src, local_files_only=local,
                                                       use_safetensors=True).eval().to(device)
                self.tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local)
                self.processor = AutoImageProcessor.from_pretrained(src, local_files_only=local)
        except (OSError, ValueError) as e:
            raise EnvNotReadyError(f"metric model: cannot load CLIP model {name}: {e}", hint=fix_hint(name)) from e
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


def tiny_clip_parts(seed: int = 0) -> tuple[Any, Any, Any]:
    """`zlt/tiny-clip`: a tiny CLIPModel with seeded random weights, its byte-level tokenizer and image processor,
    built in memory from a config (nothing downloaded). Its scores measure nothing about style; it exists so the
    whole evaluation path runs on a CPU offline (tests, benches, the quick start)."""
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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(cfg).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model, tokenizer, processor


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """`zlt/tiny-clip` saved as a transformers folder (a model folder to pass as --clip in tests)."""
    model, tokenizer, processor = tiny_clip_parts(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
