"""Samples at checkpoints (off by default): the pipeline with the training transformer, the VAE kept from the
pre-pass and the prompts' cached embeddings, so the text encoder is never reloaded.

The VAE waits in host memory and visits the GPU only while samples are drawn (load, sample, unload), and the
turbo training adapter is switched off for them (`MergedAdapter.off`), as ai-toolkit does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zlt.trainer.config import TrainerConfig


class Sampler:
    def __init__(self, vae, scheduler, cfg: TrainerConfig, texts: dict[str, Any], device) -> None:
        self.cfg = cfg
        self.vae = vae.to("cpu")
        self.scheduler = scheduler
        self.embeds = [texts[p] for p in cfg.sample.prompts]
        self.device = device

    def draw(self, trainer) -> list[Path]:
        import torch
        from diffusers import ZImagePipeline

        s, ev = self.cfg.sample, trainer.events
        ev.phase("sampling", f"{len(self.embeds)} prompt(s) at step {trainer.step}")
        tr = trainer.transformer
        pipe = ZImagePipeline(scheduler=self.scheduler, vae=self.vae, text_encoder=None, tokenizer=None, transformer=tr)
        pipe.set_progress_bar_config(disable=True)
        folder = trainer.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        # sampling must not move the training RNG streams, or a resumed run would differ from an uninterrupted one
        adapter = getattr(trainer, "adapter", None)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), \
                visiting(self.vae, self.device), (adapter.off(tr) if adapter else _nothing()):
            tr.eval()
            try:
                for i, emb in enumerate(self.embeds):
                    if not trainer.fabric.is_global_zero:
                        continue
                    with trainer.fabric.autocast():
                        img = pipe(
                            prompt_embeds=[emb.to(self.device, trainer.weight_dtype)], height=s.height, width=s.width,
                            num_inference_steps=s.steps, guidance_scale=s.guidance_scale,
                            generator=torch.Generator(device="cpu").manual_seed(s.seed + i),
                        ).images[0]
                    path = folder / f"{self.cfg.name}_{trainer.step:09d}_{i}.png"
                    img.save(path)
                    paths.append(path)
                    ev.sample(str(path.resolve()), trainer.step)
            finally:
                tr.train()
        ev.phase("training", f"back to training after step {trainer.step}")
        return paths


@contextmanager
def visiting(module, device) -> Iterator[Any]:
    """`module` on `device` inside the block, back in host memory after it (also on errors)."""
    module.to(device)
    try:
        yield module
    finally:
        module.to("cpu")
        if getattr(device, "type", str(device)) == "cuda":
            import torch

            torch.cuda.empty_cache()


@contextmanager
def _nothing() -> Iterator[None]:
    yield None
