"""`zlt train spec.yaml`: run a training job in the foreground, with a progress bar or NDJSON events.

Exit codes: 0 succeeded, 1 the job failed, was cancelled or timed out, 2 bad spec or input,
3 environment not ready. Ctrl+C asks the trainer to stop gracefully (a save in progress finishes);
a second Ctrl+C skips the grace period. The body is zlt/cli/impl/train.py.
"""

from __future__ import annotations

import json
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
)
from zlt.core.errors import ZltError


@command
def train(
    spec: Path = typer.Argument(..., help="The job spec (.yaml or .json)."),
    backend: str = BackendOpt,
    profile: str = ProfileOpt,
    vram_gb: float = VramOpt,
    workdir: Path = typer.Option(None, "--workdir", help="Job folder (default: $ZLT_HOME/jobs/<job id>)."),
    skip_preflight: bool = SkipPreflightOpt,
    ai_toolkit: str = AiToolkitOpt,
    musubi: str = MusubiOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue the job in --workdir from its latest checkpoint/state."),
    gpus: str = typer.Option(None, "--gpus", help="GPU indices for the trainer (CUDA_VISIBLE_DEVICES), e.g. 0,1; "
                             "several GPUs train one job with DDP (sets job.resources.gpu)."),
    grace: float = typer.Option(120.0, "--grace", min=0, help="Seconds a stopping trainer gets after SIGINT before SIGTERM."),
    set_: list[str] = SetOpt,
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train a LoRA now: validate, preflight, prepare the dataset, render, run the trainer, collect the artifact."""
    from zlt.cli.impl.train import train as run  # lazy: pulls pydantic (gate), jinja2 (backends)

    try:
        run(spec, backend, profile, vram_gb, workdir, skip_preflight, ai_toolkit, musubi, resume, gpus, grace,
            set_ or [], home, json_out)
    except ZltError as err:
        if not json_out:
            raise
        # NDJSON stays one object per line, even for an error.
        sys.stdout.write(json.dumps({"ok": False, **err.to_dict()}, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        raise typer.Exit(err.exit_code) from None


def register(app: typer.Typer) -> None:
    app.command("train")(train)
