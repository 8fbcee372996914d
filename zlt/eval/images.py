"""Where evaluation images come from: a seam, so the evaluator does not care who draws them.

`ImageFn(target, prompts, count, seed) -> images`: for one row of the evaluation (`target`: the base model or a
checkpoint of the artifact), `count` images per prompt, prompt-major, image i drawn with seed + i; one PIL image
each, in order. That is `zlt.infer.generate`'s contract, and `InferImages` (the default) is `zlt generate` itself:
one pipeline load per evaluation (its PipelineCache), the LoRA swapped per checkpoint, the base model drawn at LoRA
scale 0 (which `zlt generate` guarantees gives the base model's image), each LoRA file checked against its sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.eval.plan import Target
from zlt.infer.params import GenerateParams
from zlt.infer.pipeline import PipelineCache, plan_device
from zlt.infer.resolve import resolve_artifact
from zlt.infer.run import generate

ImageFn = Callable[[Target, list[str], int, int], list[Any]]


@dataclass
class DrawSettings:
    """The artifact's inference settings (the spec's sampling settings unless overridden)."""

    base_model: str
    precision: str = "bf16"
    steps: int = 9
    guidance: float = 0.0
    size: int = 1024
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class InferImages:
    """Draws through `zlt.infer.generate` (nothing saved under generations/: the images go to eval/)."""

    def __init__(self, home: Path, artifact_id: str, settings: DrawSettings, cache: Any = None,
                 gpu: int | None = None) -> None:
        self.home, self.artifact_id, self.settings, self.gpu = Path(home), artifact_id, settings, gpu
        # a worker passes its own cache: an evaluation after a generation on that base model loads nothing
        self.cache = cache if cache is not None else PipelineCache(max_pipelines=1, max_adapters=2)
        self.ran: dict[str, Any] | None = None  # what drew, once warm: device, dtype (the report's `inference`)

    def warm(self) -> None:
        """Load the base pipeline now, so its load time is not counted against the first checkpoint."""
        art = resolve_artifact(self.artifact_id, self.home)
        plan = plan_device(art.base_model, None, self.gpu)
        self.ran = {"device": plan.device, "dtype": plan.dtype, "float8": plan.float8, "offload": plan.offload}
        self.cache.entry(art.base_model, plan)

    def __call__(self, target: Target, prompts: list[str], count: int, seed: int) -> list[Any]:
        s = self.settings
        checkpoint = None if target.base or target.final else target.step
        params = GenerateParams(
            loras=[{"artifact": self.artifact_id, "scale": 0.0 if target.base else s.scale, "checkpoint": checkpoint}],
            prompts=prompts, count=count, seed=seed, steps=s.steps, guidance=s.guidance, width=s.size,
            height=s.size, trigger=False,  # the evaluation prompts already carry the trigger where it belongs
        )
        return generate(params, self.home, cache=self.cache, save=False, gpu=self.gpu).images
