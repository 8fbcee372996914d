"""Helpers shared by the built-in trainer's tests (no tests here): a small captioned image folder and a
TrainerConfig for the tiny model on the CPU."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from zlt.trainer.config import TrainerConfig

CAPTIONS = ["a red square", "a blue circle on sand", "two green stripes", "a yellow sun", "a dark triangle",
            "an orange dot pattern", "a striped flag", "a small grey box"]


def make_images(folder: Path, n: int = 6, size: tuple[int, int] = (48, 48), captions: bool = True) -> Path:
    """n deterministic pictures (shapes on a palette background) with .txt captions."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    palette = [(38, 70, 83), (42, 157, 143), (233, 196, 106), (244, 162, 97), (231, 111, 81)]
    for i in range(n):
        rng = random.Random(i)
        im = Image.new("RGB", size, palette[i % len(palette)])
        d = ImageDraw.Draw(im)
        for _ in range(4):
            x0, y0 = rng.randint(0, size[0] // 2), rng.randint(0, size[1] // 2)
            d.ellipse([x0, y0, x0 + size[0] // 3, y0 + size[1] // 3], fill=rng.choice(palette), outline=(20, 20, 28), width=2)
        im.save(folder / f"img_{i:02d}.png")
        if captions:
            (folder / f"img_{i:02d}.txt").write_text(CAPTIONS[i % len(CAPTIONS)], encoding="utf-8")
    return folder


def tiny_config_dict(tmp: Path, data_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "tinytest",
        "model": {"name": "zlt/tiny-zimage", "source": "builtin", "weight_dtype": "fp32"},
        "lora": {"rank": 4, "alpha": 4},
        "data": {"path": str(data_dir), "resolution": 32, "trigger": "<zstyle>"},
        "training": {"max_steps": 20, "learning_rate": 3e-3, "precision": "32-true", "timestep_type": "sigmoid",
                     "batch_size": 2, "seed": 7},
        "runtime": {"accelerator": "cpu"},
        "cache": {"dir": str(tmp / "cache")},
        "output": {"dir": str(tmp / "out"), "save_every": 10, "keep": 2, "save_dtype": "fp32"},
        "progress_interval_s": 0.0,
    }
    for key, val in sections.items():
        if isinstance(val, dict) and isinstance(d.get(key), dict):
            d[key] = {**d[key], **val}
        else:
            d[key] = val
    return d


def tiny_config(tmp: Path, data_dir: Path, **sections: dict[str, Any]) -> TrainerConfig:
    return TrainerConfig.model_validate(tiny_config_dict(tmp, data_dir, **sections))
