"""Expert defaults. A field the user sets always wins; `zlt render --explain` shows the source of each value."""

from __future__ import annotations

from typing import Any

# The user's v0 spec (mission.md), minus the site-specific registry path.
STYLE: dict[str, Any] = {
    "model": {
        "base": {"name": "Tongyi-MAI/Z-Image-Turbo", "source": "huggingface", "precision": "fp16", "variant": "turbo"},
        "lora": {
            "enable": True,
            "rank": 16,
            "alpha": 16,
            "dropout": 0.0,
            "target_modules": ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out"],
        },
    },
    "dataset": {
        "type": "image_only_with_caption",
        "resolution": 1024,
        "center_crop": True,
        "caption": {"strategy": "filename_or_txt", "trigger_token": "<zstyle>"},
        "repeats": 10,
        "shuffle": True,
        "augment": {"horizontal_flip": True, "color_jitter": False},
    },
    "training": {
        "backend": "lightning",
        "batch_size": 1,
        "gradient_accumulation": 4,
        "max_steps": 2000,
        "warmup_steps": 100,
        "learning_rate": 1e-4,
        "scheduler": "cosine",
        "optimizer": {"type": "adamw", "use_8bit": True},
        "mixed_precision": "fp16",
        "gradient_checkpointing": True,
        "timestep_type": "weighted",
    },
    "job": {
        "type": "async",
        "timeout_hours": 6,
        "retry": {"max_retries": 1},
        "resources": {"gpu": 1, "min_vram_gb": 24},
        "logging": {"level": "info"},
    },
    "output": {
        "format": "safetensors",
        "save": {"lora_weights": True, "config": True, "training_meta": True, "every": 250, "keep": 4},
        "naming": {"pattern": "{job_id}_{style_name}_v0"},
    },
}

# The Z-Image Turbo character guide (mission.md, "a second source").
CHARACTER: dict[str, Any] = {
    "model": {
        "base": {"name": "Tongyi-MAI/Z-Image-Turbo", "variant": "turbo", "precision": "bf16", "training_adapter": "auto"},
        "lora": {"rank": 64, "alpha": 64, "dropout": 0.0},
    },
    "dataset": {
        "resolution": 512,
        "center_crop": False,
        "caption": {"strategy": "txt", "trigger_token": None},
        "repeats": 1,
        "augment": {"horizontal_flip": False},
    },
    "training": {
        "batch_size": 1,
        "gradient_accumulation": 1,
        "max_steps": 4000,
        "warmup_steps": 0,
        "learning_rate": 2e-4,
        "scheduler": "constant",
        "optimizer": {"type": "adamw", "use_8bit": True, "weight_decay": 1e-4},
        "mixed_precision": "bf16",
        "timestep_type": "sigmoid",
        "sample": {"enable": False},
    },
    "job": {"resources": {"gpu": 1, "min_vram_gb": 16}},
    "output": {"save": {"every": 250, "keep": 7}},
}

PRESETS: dict[str, dict[str, Any]] = {"style": STYLE, "character": CHARACTER}

# Image-count advice per preset, used by `zlt dataset check`.
IMAGE_COUNT_ADVICE: dict[str, tuple[int, int]] = {"style": (15, 200), "character": (70, 80)}
