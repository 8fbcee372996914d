"""Backend-free helpers of a training run (zlt.flows.training_run): the error a failed preflight raises and the hint an
out-of-memory failure carries."""

from __future__ import annotations

from typing import Any

from zlt.core.errors import BadInputError, EnvNotReadyError, ZltError
from zlt.core.units import rate_text
from zlt.preflight.levers import suggest_levers
from zlt.profiles import HardwareProfile, gpu_profiles
from zlt.run.checkpoints import CheckpointFile
from zlt.spec.models import JobSpec


def oom_hint(spec: JobSpec, profile: HardwareProfile | None, backend: str) -> str:
    """The preflight levers that lower peak VRAM, as the flags to pass."""
    parts: list[str] = []
    if profile is not None and not profile.is_cpu:
        try:
            parts = [lv.change for lv in suggest_levers(spec, profile, backend, profile.vram_gb)][:4]
        except Exception:  # noqa: BLE001 - a hint must never hide the failure it explains
            parts = []
    if not parts:
        current = profile.vram_gb if profile is not None else 0
        smaller = [p for p in gpu_profiles() if 0 < p.vram_gb < current]
        if smaller:
            parts.append(f"--profile {smaller[-1].name}")
        if spec.dataset.resolution > 512:
            parts.append(f"--set dataset.resolution={768 if spec.dataset.resolution > 768 else 512}")
        if spec.training.batch_size > 1:
            parts.append("--set training.batch_size=1")
        if not spec.training.gradient_checkpointing:
            parts.append("--set training.gradient_checkpointing=true")
    levers = ", ".join(parts) or "a GPU with more memory"
    return f"lower peak VRAM: {levers}; `zlt preflight` shows the estimate"


def preflight_error(report: Any) -> ZltError:
    """A failed PreflightReport as the error to raise (exit code 2 or 3, as the report says)."""
    problems, hints = [], []
    for check in getattr(report, "checks", []) or []:
        status = str(getattr(check, "status", "")).lower()
        ok = getattr(check, "ok", None)
        if ok is False or status in ("fail", "failed", "error"):
            name = getattr(check, "name", "check")
            problems.append(f"{name}: {getattr(check, 'message', '')}".strip(": "))
            if getattr(check, "hint", None):
                hints.append(str(check.hint))
    message = "preflight failed: " + ("; ".join(problems) if problems else "see preflight.json in the job folder")
    hint = "; ".join(hints) or "fix the problems above, or pass --skip-preflight to try anyway"
    if getattr(report, "exit_code", 3) == 2:
        return BadInputError(message, hint)
    return EnvNotReadyError(message, hint)


def keep_last_good(outcome: Any, checkpoints: list[CheckpointFile], diverged_at: int | None) -> None:
    """After a divergence only checkpoints saved before the first nan/inf loss are good; later files stay on disk
    (nothing a user trained is deleted) but are not offered."""
    at = diverged_at
    good = [c for c in checkpoints if c.valid and c.step is not None and (at is None or c.step < at)]
    outcome.checkpoints = [c.to_dict() for c in good]
    if good:
        outcome.message = f"{outcome.message}; last good checkpoint: step {good[-1].step} ({good[-1].path})"
    else:
        outcome.message = f"{outcome.message}; no checkpoint was saved before it"


def say_trained(outcome: Any, summary: dict[str, Any], last_step: int | None, max_steps: int, decision: Any) -> None:
    """A succeeded run's message: steps, loss and speed; `decision`: the early stop that ended it, if one did."""
    sm = summary
    loss = f"; loss {sm['first_loss']:.4g} -> {sm['final_loss']:.4g}" if sm.get("first_loss") is not None else ""
    speed = f"; {rate_text(sm['it_s'])} average" if sm.get("it_s") else ""
    outcome.message = f"trained {last_step or max_steps} steps{loss}{speed}"
    if decision is not None:
        outcome.stopped_early = decision.reason
        outcome.message += (f"; stopped early at step {last_step} of {max_steps} "
                            f"(eval.early_stop, decided on step {decision.step}): {decision.reason}")
