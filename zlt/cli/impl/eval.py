"""The body of `zlt eval ARTIFACT` (declared in zlt/cli/eval.py). The evaluation (numpy, pydantic) loads here, on
first use, never for `zlt --help`; torch and CLIP load when it draws."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.artifacts.resolve import resolve_id
from zlt.cli.common import home_path, print_json
from zlt.core.errors import BadInputError
from zlt.eval.evaluate import evaluate_artifact
from zlt.eval.options import options_for
from zlt.eval.prompts import read_prompts_file
from zlt.eval.request import EvalRequest
from zlt.eval.table import table_lines
from zlt.flows.evaluation import submit_evaluation


def eval_artifact(artifact_id: str, *, prompts: Path | None, seeds: int | None, checkpoints: str | None,
                  clip: str | None, scale: float | None, steps: int | None, guidance: float | None, size: int | None,
                  train_images: Path | None, submit: bool, json_out: bool, home: Path | None,
                  targets: bool = False) -> None:
    h = home_path(home)
    artifact_id = resolve_id(h, artifact_id)  # once: 'latest' or a style name must not move between the steps below
    if submit:
        _submit(h, artifact_id, json_out, train_images, prompts=read_prompts_file(prompts) if prompts else None,
                seeds=seeds, checkpoints=checkpoints, clip=clip, scale=scale, steps=steps, guidance=guidance, size=size,
                targets=targets or None)
        return
    opts = options_for(h, artifact_id, prompts=read_prompts_file(prompts) if prompts else None, seeds=seeds,
                       checkpoints=checkpoints, clip=clip, scale=scale, steps=steps, guidance=guidance, size=size,
                       train_images=train_images, targets=targets or None)
    report = evaluate_artifact(h, artifact_id, opts,
                               progress=None if json_out else (lambda msg: typer.echo(msg, err=True)))
    if json_out:
        print_json({"ok": True, "report": report})
        return
    for line in table_lines(report["checkpoints"], report["best"]["step"]):
        typer.echo(line)
    typer.echo(f"best: {report['best']['reason']}")
    if report["best"].get("caveat"):
        typer.echo(f"caution: {report['best']['caveat']}")
    typer.echo(f"wrote: {report['eval_dir']} (report.json, contact_sheet.png, curves.png)")
    for w in report["warnings"]:
        typer.echo(f"warning: {w}", err=True)


def _submit(home: Path, artifact_id: str, json_out: bool, train_images: Path | None, **fields: object) -> None:
    if train_images is not None:
        raise BadInputError("--train-images cannot be queued: a job reads the training images the artifact names",
                            hint="run without --submit to evaluate against another folder")
    st = submit_evaluation(home, artifact_id, EvalRequest(**{k: v for k, v in fields.items() if v is not None}))
    if json_out:
        print_json({"ok": True, **st})
    else:
        typer.echo(f"{st['job_id']}  queued: evaluation of {st['evaluates']} (follow with 'zlt status {st['job_id']}')")
