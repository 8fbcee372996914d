"""`zlt preflight SPEC` (will this job run here, or on the machine named by --assume-gpu?) and `zlt doctor`
(the environment alone). Exit codes: 0 ready, 2 spec or arguments invalid, 3 environment not ready."""

from __future__ import annotations

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
    VramOpt,
    command,
    print_json,
)


@command
def preflight(
    spec: Path = typer.Argument(..., help="The job spec (.yaml or .json)."),
    backend: str = BackendOpt,
    profile: str = ProfileOpt,
    assume_gpu: str = typer.Option(None, "--assume-gpu",
                                   help='Plan for a GPU that is not here, "NAME:VRAM_GB", e.g. "RTX 4090:24".'),
    vram_gb: float = VramOpt,
    explain: bool = typer.Option(False, "--explain", help="Print the VRAM estimate's breakdown and the levers."),
    ai_toolkit: str = AiToolkitOpt,
    musubi: str = MusubiOpt,
    no_data: bool = typer.Option(False, "--no-data", help="Skip the dataset check."),
    set_: list[str] = SetOpt,
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Check everything a job needs before it starts: GPU, VRAM fit, RAM, disk, trainer install, model files,
    dataset. Every check is reported, each failure with a one-line fix."""
    from zlt.cli.impl.preflight import preflight as run  # lazy: pulls pydantic (gate, checks)

    run(spec, backend=backend, profile=profile, assume_gpu=assume_gpu, vram_gb=vram_gb, explain=explain,
        ai_toolkit=ai_toolkit, musubi=musubi, no_data=no_data, sets=set_ or [], home=home, json_out=json_out)


@command
def doctor(
    ai_toolkit: str = AiToolkitOpt,
    musubi: str = MusubiOpt,
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Show the environment: state folder, GPUs and driver, trainer installs and their versions, packages, config,
    HF cache. Exits 3 when no backend can train here or the state folder is unusable."""
    from zlt.preflight.doctor import environment_report  # lazy: the checks pull pydantic (spec models)

    report = environment_report(ai_toolkit=ai_toolkit, musubi=musubi, home_dir=home)
    if json_out:
        print_json(report.to_dict())
    else:
        typer.echo("\n".join(_doctor_lines(report)))
    raise typer.Exit(report.exit_code)


def _doctor_lines(report) -> list[str]:
    width = max(len(r.name) for r in report.rows)
    mark = {"pass": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "--  "}  # skip: optional, not installed
    lines = []
    for r in report.rows:
        lines.append(f"{mark[r.status]}  {r.name:<{width}}  {r.message}")
        if r.fix and r.status != "pass":
            lines.append(f"      {'':<{width}}  {'to install' if r.status == 'skip' else 'fix'}: {r.fix}")
    ready = ", ".join(report.ready_backends) or "none"
    tiny_only = " (no GPU: the tiny test model only)" if report.ready_backends and not report.gpus else ""
    lines.append(f"backends ready here: {ready}{tiny_only}")
    return lines


def register(app: typer.Typer) -> None:
    app.command("preflight")(preflight)
    app.command("doctor")(doctor)
