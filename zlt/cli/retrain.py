"""`zlt retrain ARTIFACT`: queue a job that starts from a finished LoRA and becomes its style's next version.

Exit codes: 0 queued, 2 bad input (unknown artifact, both --steps and --more-steps, other rank), 3 environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from zlt.cli.common import (
    AiToolkitOpt,
    BackendOpt,
    HomeOpt,
    JsonOpt,
    MusubiOpt,
    ProfileOpt,
    SetOpt,
    SkipPreflightOpt,
    VramOpt,
    command,
    home_path,
    print_json,
)


def retrain(
    artifact: str = typer.Argument(..., help="Artifact id, STYLE@vN, a style name (its current version) or a job id."),
    steps: int = typer.Option(None, "--steps", help="Train N new steps from the artifact's weights (fresh optimizer)."),
    more_steps: int = typer.Option(None, "--more-steps", help="Continue for N more steps (default: as many as before)."),
    dataset: Path = typer.Option(None, "--dataset", help="Train on this image folder instead of the parent's."),
    set_: list[str] = SetOpt,
    backend: str = BackendOpt,
    profile: str = ProfileOpt,
    priority: int = typer.Option(None, "--priority", help="Queue priority -100..100 (default: job.priority)."),
    skip_preflight: bool = SkipPreflightOpt,
    ai_toolkit: Path = AiToolkitOpt,
    musubi: Path = MusubiOpt,
    vram_gb: float = VramOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would run (mode, steps); queue nothing."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Only queue; do not start a background worker."),
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train a finished LoRA further (more steps, more data, other settings) as the next version of its style."""
    from zlt.flows.retrain import plan_retrain, submit_retrain  # lazy: pulls pydantic (the spec models)

    h = home_path(home)
    args = dict(steps=steps, more_steps=more_steps, dataset=str(dataset) if dataset else None, sets=set_ or [],
                backend=backend)
    if dry_run:
        plan = plan_retrain(h, artifact, **args).summary()
        if json_out:
            print_json({"ok": True, "dry_run": True, "queued": False, "retrain": plan})
        else:
            print(_describe(plan) + "\ndry run: nothing was queued (run it without --dry-run to queue it)")
        return
    options = {"ai_toolkit": ai_toolkit, "musubi": musubi, "vram_gb": vram_gb}
    st = submit_retrain(h, artifact, **args, profile=profile, priority=priority, skip_preflight=skip_preflight,
                        start_worker=not no_worker, options=options)
    if json_out:
        print_json(st)
        return
    print(st["job_id"])
    sys.stderr.write(_describe(st["retrain"]) + f"; follow it: zlt status {st['job_id']} --watch\n")


def _describe(plan: dict) -> str:
    if plan["mode"] == "resume":
        how = f"resumes {plan['parent_id']} at step {plan['base_step']} (optimizer state too) up to {plan['max_steps']}"
    else:
        how = (f"warm start from {plan['parent_id']} (step {plan['base_step']}): {plan['max_steps']} new steps, "
               f"fresh optimizer ({plan['why_warm']})")
    fit = f"; to fit {plan['max_steps']} steps: {', '.join(plan['adjusted'])}" if plan.get("adjusted") else ""
    return f"retrain of {plan['style']} on {plan['backend']}: {how}{fit}"


def register(app: typer.Typer) -> None:
    app.command("retrain")(command(retrain))
