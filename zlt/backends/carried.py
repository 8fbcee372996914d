"""The vocabulary of the parity tables: each spec leaf field is carried out by the trainer (the rendered config or
argv, or a render warning where it cannot) or by zlt itself. Each backend package's `parity.py` holds its table;
`zlt.backends.parity` joins them into docs/parity.md and `zlt render --explain`."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from zlt.spec.models import JobSpec

TRAINER = "trainer"  # the rendered config/argv carries it out, or the render warns where it cannot
ZLT = "zlt"  # zlt does it itself (dataset prepare, job runner, registry), identically on every backend


@dataclass(frozen=True)
class Carried:
    kind: str
    where: str


def T(where: str) -> Carried:
    return Carried(TRAINER, where)


def Z(where: str) -> Carried:
    return Carried(ZLT, where)


# Fields zlt carries out itself, whatever the backend.
COMMON: dict[str, Carried] = {
    "preset": Z("spec loader: fills in the preset's values before validation"),
    "dataset.type": Z("spec loader (one kind today)"),
    "dataset.center_crop": Z("dataset prepare: crops to the bucket's aspect ratio"),
    "dataset.strict": Z("preflight and dataset prepare: an unreadable image is refused (exit 2), not skipped"),
    "training.backend": Z("picks the renderer"),
    "training.effective_batch_size": Z("spec loader: checked against batch_size x gradient_accumulation"),
    "training.stop_on_nan": Z("job runner: stops the trainer after 5 logged nan/inf losses in a row, cause diverged"),
    "job.type": Z("job runner: submit returns at once (async) or waits (sync)"),
    "job.timeout_hours": Z("job runner: stops the trainer after this long"),
    "job.priority": Z("job queue order"),
    "job.retry.max_retries": Z("job runner: retries resume from the last checkpoint/state"),
    "job.retry.on_oom": Z("job runner: retry with the next smaller hardware profile"),
    "job.resources.min_vram_gb": Z("hardware profile selection and preflight"),
    "job.callback_url": Z("zlt serve: webhook on state changes"),
    "output.format": Z("artifact registry (safetensors only)"),
    "output.key_format": Z("artifact registry: converts lora.safetensors to this key layout"),
    "output.save.lora_weights": Z("artifact registry"),
    "output.save.config": Z("artifact registry"),
    "output.save.training_meta": Z("artifact registry"),
    "output.registry.type": Z("artifact registry"),
    "output.registry.path": Z("artifact registry"),
    "output.naming.pattern": Z("artifact registry: the artifact folder name"),
    "eval.enable": Z("job runner: zlt eval on the artifact once it is collected"),
    "eval.prompts": Z("zlt eval: held-out prompts (default set when empty)"),
    "eval.seeds": Z("zlt eval: images per prompt"),
    "eval.checkpoints": Z("zlt eval: which kept checkpoints are scored"),
    "eval.scale": Z("zlt eval: LoRA scale of the drawn images"),
    "eval.size": Z("zlt eval: image side"),
    "eval.alignment_tolerance": Z("zlt eval: best-checkpoint rule"),
    "eval.memorisation_max": Z("zlt eval: best-checkpoint rule"),
    "eval.every": Z("job runner: scores a checkpoint every N steps while the trainer runs (zlt/flows/live_eval.py); "
                    "the artifact's evaluation reuses those rows"),
    "eval.early_stop.enable": Z("job runner: stops the trainer (its stop ladder, as a cancel) when the rule says so; "
                                "the job succeeds and is collected"),
    "eval.early_stop.patience": Z("early-stop rule (zlt/eval/early_stop.py)"),
    "eval.early_stop.min_delta": Z("early-stop rule (zlt/eval/early_stop.py)"),
    "eval.early_stop.min_step": Z("early-stop rule (zlt/eval/early_stop.py)"),
    "eval.models.clip": Z("zlt eval: the CLIP model of the metrics (local path or hub id, never downloaded offline)"),
    "dataset.caption.auto.enable": Z("job runner: captions the images before prepare (zlt/flows/captioning.py); "
                                     "captions.json and the artifact's zlt.captioner say which and by what"),
    "dataset.caption.auto.model": Z("captioner (zlt/caption/models.py), loaded offline; preflight checks it is there"),
    "dataset.caption.auto.mode": Z("captioner: missing = images without a sidecar; all = every image (NAME.txt.bak)"),
    "dataset.caption.auto.prefix": Z("captioner: put before each generated caption"),
    "dataset.caption.auto.suffix": Z("captioner: put after each generated caption"),
    "dataset.caption.auto.max_words": Z("captioner: generated captions cut to this many words"),
}
PREPARED = "dataset prepare writes the final captions (.txt) the trainer reads"

def leaf_fields(model: type[BaseModel] = JobSpec, prefix: str = "") -> list[str]:
    """Every leaf field path of the spec, in schema order (lists are leaves)."""
    out: list[str] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += leaf_fields(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


