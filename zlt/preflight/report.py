"""What preflight returns: a list of checks (pass / warn / fail, each with a one-line fix), the chosen profile
and the VRAM estimate; and its text form. Rendering is pure: lines in, no printing here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from zlt.core.errors import EXIT_BAD_INPUT, EXIT_ENV_NOT_READY, EXIT_OK
from zlt.preflight.vram import VramEstimate

Status = Literal["pass", "warn", "fail", "skip"]  # skip: an optional part that is not installed (zlt doctor)
_MARK = {"pass": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "--  "}
# Checks whose failure is the user's input, not the machine: a job failing only these is bad input (exit 2).
BAD_INPUT_CHECKS = frozenset({"dataset"})


@dataclass
class Check:
    name: str  # stable id: gpu, vram, ram, disk, cpu, trainer, trainer_version, model, dataset, config
    status: Status
    message: str
    fix: str = ""  # one line: what to do; empty on pass
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    @property
    def hint(self) -> str:
        return self.fix

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix,
                "details": self.details}


@dataclass
class PreflightReport:
    checks: list[Check]
    profile: str | None  # the profile the estimate is for ('auto' resolved)
    estimate: VramEstimate | None
    backend: str = ""
    budget_gb: float | None = None  # memory the estimate was held against
    levers: list[Any] = field(default_factory=list)  # zlt.preflight.levers.Lever
    smallest_profile: str | None = None
    gpus: list[Any] = field(default_factory=list)  # zlt.preflight.gpu.GpuInfo the job would use

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; 2 when only the user's input failed (the dataset); else 3."""
        failed = self.failed()
        if not failed:
            return EXIT_OK
        return EXIT_BAD_INPUT if all(c.name in BAD_INPUT_CHECKS for c in failed) else EXIT_ENV_NOT_READY

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in ("pass", "warn", "fail")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "backend": self.backend,
            "profile": self.profile,
            "budget_gb": round(self.budget_gb, 2) if self.budget_gb is not None else None,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "levers": [lv.to_dict() for lv in self.levers],
            "smallest_profile": self.smallest_profile,
            "gpus": [g.to_dict() for g in self.gpus],
            "counts": self.counts(),
            "checks": [c.to_dict() for c in self.checks],
        }


def render_checks(report: PreflightReport) -> list[str]:
    """One line per check, its fix indented under it, and a summary line."""
    width = max((len(c.name) for c in report.checks), default=4)
    lines = []
    for c in report.checks:
        lines.append(f"{_MARK[c.status]}  {c.name:<{width}}  {c.message}")
        if c.fix and c.status != "pass":
            lines.append(f"      {'':<{width}}  fix: {c.fix}")
    n = report.counts()
    verdict = "ready" if report.ok else "not ready"
    lines.append(f"{verdict}: {n['pass']} passed, {n['warn']} warnings, {n['fail']} failed "
                 f"(backend {report.backend}, profile {report.profile or '-'})")
    return lines


_PART_LABEL = {
    "transformer": "transformer weights",
    "text_encoder": "text encoder (resident)",
    "vae": "VAE",
    "lora_train_state": "LoRA weights + grads + optimizer",
    "activations": "activations",
    "sampling": "sampling extra (over activations)",
    "block_swap": "block swap (host memory)",
    "overhead": "CUDA context and workspaces",
    "loading_extra": "loading phase extra",
    "margin": "safety margin",
    "tiny_model": "tiny test model",
}


def render_explain(report: PreflightReport) -> list[str]:
    """The estimate's breakdown, the budget, and the levers in order."""
    est = report.estimate
    if est is None:
        return ["no VRAM estimate (no profile could be chosen)"]
    lines = [f"VRAM estimate for backend {report.backend}, profile {report.profile} (GiB):"]
    for key, value in est.parts.items():
        lines.append(f"  {_PART_LABEL.get(key, key):<36} {value:>7.2f}")
    lines.append(f"  {'total':<36} {est.total_gb:>7.2f}")
    if est.phases:
        lines.append("  phases: " + ", ".join(f"{k} {v:.2f}" for k, v in est.phases.items()))
    for note in est.notes:
        lines.append(f"  note: {note}")
    if report.budget_gb is not None:
        verdict = "fits" if est.total_gb <= report.budget_gb else "does not fit"
        lines.append(f"budget {report.budget_gb:.2f} GiB: {verdict}")
    if report.levers:
        lines.append("levers, in order (estimate alone / with the ones above):")
        for lv in report.levers:
            mark = "fits" if lv.fits_cumulative else "    "
            lines.append(f"  {lv.title:<32} {lv.estimate_gb:>6.2f} / {lv.cumulative_gb:>6.2f} {mark}  {lv.change}")
    if report.smallest_profile:
        lines.append(f"smallest profile that fits as written: {report.smallest_profile}")
    return lines
