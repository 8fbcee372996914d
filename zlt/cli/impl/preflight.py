"""The body of `zlt preflight SPEC` (declared in zlt/cli/preflight.py). The gate, the spec models (pydantic) and
every check load here, on first use, never for `zlt --help`."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.cli.common import backend_sets, home_path, print_json
from zlt.flows.gate import load_checked
from zlt.flows.preflight import preflight as run_preflight
from zlt.preflight.report import render_checks, render_explain


def preflight(spec: Path, *, backend: str | None, profile: str, assume_gpu: str | None, vram_gb: float | None,
              explain: bool, ai_toolkit: str | None, musubi: str | None, no_data: bool, sets: list[str],
              home: Path | None, json_out: bool) -> None:
    loaded = load_checked(spec, sets + backend_sets(backend))
    report = run_preflight(loaded.spec, backend=backend, profile=profile, vram_gb=vram_gb, assume_gpu=assume_gpu,
                           ai_toolkit=ai_toolkit, musubi=musubi, home=home_path(home), check_data=not no_data,
                           spec_path=spec)
    if json_out:
        print_json(report.to_dict())
    else:
        lines = render_checks(report)
        if explain:
            lines = render_explain(report) + [""] + lines
        typer.echo("\n".join(lines))
    raise typer.Exit(report.exit_code)
