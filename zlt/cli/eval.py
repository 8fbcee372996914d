"""`zlt eval ARTIFACT`: score and picture every checkpoint of an artifact, pick the best (thin: zlt.eval works)."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.artifacts.resolve import resolve_id
from zlt.cli.common import HomeOpt, JsonOpt, command, home_path, print_json


@command
def eval_cmd(
    artifact_id: str = typer.Argument(..., help="Artifact: id, unique id prefix, job id, style name (its current "
                                      "version), STYLE@vN or 'latest'."),
    prompts: Path | None = typer.Option(None, "--prompts", help="Held-out prompts: a text file, one a line "
                                        "('\\[trigger]' marks where the trigger goes), or a JSON/YAML list. "
                                        "Default: 8 varied subjects."),
    seeds: int | None = typer.Option(None, "--seeds", help="Images per prompt (different seeds), 1..16 "
                                     "(default: the spec's eval.seeds, 2)."),
    checkpoints: str | None = typer.Option(None, "--checkpoints", help="all, last, or steps like 250,500 (default: "
                                           "all; the base model is always row 0)."),
    clip: str | None = typer.Option(None, "--clip", help="CLIP model for the metrics: a local folder or a hub id "
                                    "(default: the spec's eval.models.clip, else openai/clip-vit-large-patch14)."),
    scale: float | None = typer.Option(None, "--scale", help="LoRA scale (default: the spec's eval.scale, 1.0)."),
    steps: int | None = typer.Option(None, "--steps", help="Denoising steps (default: the spec's sampling steps)."),
    guidance: float | None = typer.Option(None, "--guidance", help="Guidance scale (default: the spec's)."),
    size: int | None = typer.Option(None, "--size", help="Square image side, multiple of 16 (default: the training "
                                    "resolution)."),
    train_images: Path | None = typer.Option(None, "--train-images", help="Folder of training images (default: "
                                             "the artifact's prepared dataset)."),
    submit: bool = typer.Option(False, "--submit", help="Queue it as a job for the worker and return the job id "
                                "at once (follow with 'zlt status ID')."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Evaluate an artifact: draw held-out prompts with every checkpoint and the base model, score style
    similarity, prompt alignment, memorisation and diversity with CLIP, pick the best checkpoint, and write
    eval/report.json, eval/contact_sheet.png and eval/curves.png into the artifact."""
    from zlt.eval.options import options_for
    from zlt.eval.prompts import read_prompts_file

    h = home_path(home)
    artifact_id = resolve_id(h, artifact_id)  # once: 'latest' or a style name must not move between the steps below
    if submit:
        _submit(h, artifact_id, json_out, train_images, prompts=read_prompts_file(prompts) if prompts else None,
                seeds=seeds, checkpoints=checkpoints, clip=clip, scale=scale, steps=steps, guidance=guidance, size=size)
        return
    opts = options_for(h, artifact_id, prompts=read_prompts_file(prompts) if prompts else None, seeds=seeds,
                       checkpoints=checkpoints, clip=clip, scale=scale, steps=steps, guidance=guidance, size=size,
                       train_images=train_images)
    from zlt.eval.evaluate import evaluate_artifact

    report = evaluate_artifact(h, artifact_id, opts,
                               progress=None if json_out else (lambda msg: typer.echo(msg, err=True)))
    if json_out:
        print_json({"ok": True, "report": report})
        return
    from zlt.eval.table import table_lines

    for line in table_lines(report["checkpoints"], report["best"]["step"]):
        typer.echo(line)
    typer.echo(f"best: {report['best']['reason']}")
    typer.echo(f"wrote: {report['eval_dir']} (report.json, contact_sheet.png, curves.png)")
    for w in report["warnings"]:
        typer.echo(f"warning: {w}", err=True)


def _submit(home: Path, artifact_id: str, json_out: bool, train_images: Path | None, **fields: object) -> None:
    from zlt.core.errors import BadInputError
    from zlt.eval.request import EvalRequest
    from zlt.flows.evaluation import submit_evaluation

    if train_images is not None:
        raise BadInputError("--train-images cannot be queued: a job reads the training images the artifact names",
                            hint="run without --submit to evaluate against another folder")
    st = submit_evaluation(home, artifact_id, EvalRequest(**{k: v for k, v in fields.items() if v is not None}))
    if json_out:
        print_json({"ok": True, **st})
    else:
        typer.echo(f"{st['job_id']}  queued: evaluation of {st['evaluates']} (follow with 'zlt status {st['job_id']}')")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
