"""`zlt retrain ARTIFACT`: a new job whose LoRA starts from a finished artifact and becomes its style's next version.

Steps:
- `--more-steps N` (default: as many steps as the parent trained) continues training. With the dataset and every
  setting unchanged and the parent's trainer state still in its job folder, the job *resumes* the parent's run
  (weights, optimizer, LR schedule, RNG): `max_steps` becomes parent steps + N and the trainer picks up at the
  parent's last step, so the schedule is the one of the total (constant: the same LR; cosine: the curve of the
  total from the parent's step on). Otherwise it is a warm start: N new steps from the parent's weights with a
  fresh optimizer and a fresh schedule (warmup included).
- `--steps N` is always a warm start of N steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.artifacts import store

# Settings a resume may differ in: the step count, and what does not change the optimisation.
RESUME_NEUTRAL = ("training.max_steps", "job.", "output.", "training.sample.")


@dataclass
class RetrainPlan:
    parent: dict[str, Any]
    spec: Any  # LoadedSpec
    mode: str  # resume | warm
    base_step: int
    why_warm: str | None = None
    copy: dict[str, str] = field(default_factory=dict)
    parent_spec: dict[str, Any] = field(default_factory=dict)
    adjusted: list[str] = field(default_factory=list)  # settings changed to fit the new step count

    def summary(self) -> dict[str, Any]:
        tr = self.spec.spec.training
        return {"parent_id": self.parent["id"], "style": self.parent["name"], "mode": self.mode,
                "base_step": self.base_step, "max_steps": tr.max_steps, "backend": tr.backend,
                "why_warm": self.why_warm, "adjusted": self.adjusted}


def next_version_hint(home: Path, style: str) -> int:
    return store.peek_next_version(Path(home), style)
