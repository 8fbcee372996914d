"""`zlt eval ARTIFACT`: score and picture every checkpoint of an artifact, pick the best (thin: zlt.eval works; the body is
zlt/cli/impl/eval.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.cli.common import HomeOpt, JsonOpt, command


@command
def eval_cmd(
    artifact_id: str = typer.Argument(..., help="Artifact: id, unique id prefix, job id, style name (its current "
                                      "version), STYLE@vN or 'latest'."),
    prompts: Path | None = typer.Option(None, "--prompts", help="Held-out prompts: a text file, one a line "
                                        "('[trigger]' marks where the trigger goes), or a JSON/YAML list. "
                                        "Default: 8 varied subjects."),
    seeds: int | None = typer.Option(None, "--seeds", help="Images per prompt (different seeds), 1..16 "
                                     "(default: the spec's eval.seeds, 2)."),
    checkpoints: str | None = typer.Option(None, "--checkpoints", help="all, last, or steps like 250,500 (default: "
                                           "all; the base model is always row 0)."),
    clip: str | None = typer.Option(None, "--clip", help="CLIP model for the metrics: a local folder, a hub id "
                                    "already downloaded, or zlt/tiny-clip (built in: tiny random weights, nothing "
                                    "downloaded; it measures nothing, for smoke tests). Default: the spec's "
                                    "eval.models.clip, else openai/clip-vit-large-patch14."),
    scale: float | None = typer.Option(None, "--scale", help="LoRA scale (default: the spec's eval.scale, 1.0)."),
    steps: int | None = typer.Option(None, "--steps", help="Denoising steps (default: the spec's sampling steps)."),
    guidance: float | None = typer.Option(None, "--guidance", help="Guidance scale (default: the spec's)."),
    size: int | None = typer.Option(None, "--size", help="Square image side, multiple of 16 (default: the training "
                                    "resolution)."),
    train_images: Path | None = typer.Option(None, "--train-images", help="Folder of training images (default: "
                                             "the artifact's prepared dataset)."),
    targets: bool = typer.Option(False, "--targets", help="Add the report's `targets` block: CLIP style "
                                 "similarity > 0.85 per checkpoint (FID/LPIPS targets: not comparable here)."),
    submit: bool = typer.Option(False, "--submit", help="Queue it as a job for the worker and return the job id "
                                "at once (follow with 'zlt status ID')."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Evaluate an artifact: draw held-out prompts with every checkpoint and the base model, score style
    similarity, prompt alignment, memorisation and diversity with CLIP, pick the best checkpoint, and write
    eval/report.json, eval/contact_sheet.png and eval/curves.png into the artifact."""
    from zlt.cli.impl.eval import eval_artifact  # lazy: the evaluation pulls numpy and pydantic

    eval_artifact(artifact_id, prompts=prompts, seeds=seeds, checkpoints=checkpoints, clip=clip, scale=scale,
                  steps=steps, guidance=guidance, size=size, train_images=train_images, targets=targets, submit=submit,
                  json_out=json_out, home=home)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
