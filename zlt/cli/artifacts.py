"""`zlt artifacts ...`: list, show, verify, export, rm and collect registry artifacts (thin: zlt.artifacts does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from zlt.artifacts.promote import current_id
from zlt.artifacts.resolve import resolve_row
from zlt.artifacts.versions import style_line
from zlt.cli import artifact_versions
from zlt.cli.artifact_versions import print_style_line
from zlt.cli.common import HomeOpt, JsonOpt, command, home_path, print_json
from zlt.core.errors import EXIT_JOB_FAILED, BadInputError
from zlt.core.units import rate_text
from zlt.eval.table import summary_lines

artifacts_app = typer.Typer(
    name="artifacts",
    help="The artifact registry: trained LoRAs with their checkpoints, spec, curve and hashes.",
    no_args_is_help=True,
)

IdArg = typer.Argument(..., help="Artifact: id, unique id prefix, job id, style name (its current version), "
                       "STYLE@vN or 'latest' (see 'zlt artifacts list').")


def _registry():
    """zlt.artifacts.registry: list, show, verify and export read the registry through it."""
    from zlt.artifacts import registry  # lazy: reads specs and backends, pulls pydantic; --help stays fast

    return registry


def _job_artifacts():
    """zlt.flows.job_artifacts (rm and collect also update the jobs that point at an artifact)."""
    from zlt.flows import job_artifacts  # lazy: via zlt.jobs it pulls pydantic, kept out of --help

    return job_artifacts


def _fmt_loss(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "-"


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@artifacts_app.command("list")
@command
def list_cmd(
    style: str | None = typer.Option(None, "--style", help="Only this style: its versions with step, loss, eval scores."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """List every artifact in the registry index, oldest first (--style: one style's version line)."""
    if style is not None:
        line = style_line(home_path(home), style)
        if json_out:
            print_json({"ok": True, **line})
        else:
            print_style_line(line)
        return
    rows = _registry().list_artifacts(home_path(home))
    if json_out:
        print_json({"ok": True, "artifacts": rows})
        return
    if not rows:
        typer.echo("No artifacts yet. A finished job leaves one; see 'zlt jobs list'.")
        return
    width = max(len(r["id"]) for r in rows)
    typer.echo(f"{'ID':<{width}}  {'STEP':>6}  {'LOSS':>8}  {'FORMAT':<9}  CREATED")
    for r in rows:
        step = r["final_step"] if r["final_step"] is not None else "-"
        missing = "  (folder missing)" if not r["exists"] else ""
        typer.echo(
            f"{r['id']:<{width}}  {step!s:>6}  {_fmt_loss(r['final_loss']):>8}  {r['key_format'] or '-':<9}  "
            f"{r['created_at']}{missing}"
        )


def _version_line(a: dict[str, Any]) -> str:
    """'v1 of watercolor, retrained (resume) from <parent>; +2 -1 images'."""
    lin = a.get("lineage") or {}
    text = f"v{a.get('version')} of {a.get('name')}"
    if a.get("parent_id"):
        text += f", retrained ({lin.get('mode') or '?'}) from {a['parent_id']}"
        changes = lin.get("dataset_changes")
        if changes and (changes.get("added") or changes.get("removed")):
            text += f"; images +{len(changes['added'])} -{len(changes['removed'])}"
    return text


@artifacts_app.command("show")
@command
def show_cmd(artifact_id: str = IdArg, json_out: bool = JsonOpt, home: Path | None = HomeOpt) -> None:
    """Metadata, files and loss-curve summary of one artifact."""
    a = _registry().get_artifact(home_path(home), artifact_id)
    if json_out:
        print_json({"ok": True, "artifact": a})
        return
    meta = a["training_meta"]
    backend = meta.get("backend") or {}
    gpu = meta.get("gpu") or {}
    ds = meta.get("dataset") or {}
    lines = [
        ("id", a["id"]), ("version", _version_line(a)), ("job", a["job_id"]), ("path", a["path"]),
        ("created", a["created_at"]),
        ("status", a.get("status") or "-"),
        ("backend", " ".join(str(x) for x in (backend.get("name"), backend.get("version")) if x) or "-"),
        ("gpu", " ".join(filter(None, [gpu.get("name"), f"peak {gpu['peak_vram_gb']} GB" if gpu.get("peak_vram_gb") else None])) or "-"),
        ("key format", a["key_format"] or "-"),
        ("steps", f"{a['final_step']} of {(meta.get('training') or {}).get('max_steps', '-')}"),
        ("dataset", f"{ds.get('num_images', '-')} images, sha256 {str(a['dataset_sha256'] or '-')[:12]}"),
        ("spec sha256", str(a["spec_sha256"])[:12]),
        ("trigger", a["lora_metadata"].get("modelspec.trigger_phrase") or "-"),
    ]
    for k, v in lines:
        typer.echo(f"{k:>12}: {v}")
    c = a["curve"]
    if c.get("points"):
        typer.echo(
            f"{'loss':>12}: {_fmt_loss(c['first_loss'])} -> {_fmt_loss(c['final_loss'])} "
            f"(min {_fmt_loss(c['min_loss'])} at step {c['min_step']}; {c['points']} points from {c['source']})"
        )
    if c.get("it_s"):
        typer.echo(f"{'speed':>12}: {rate_text(c['it_s'])}")
    if meta.get("eval"):
        for line in summary_lines(meta["eval"]):
            typer.echo(line)
    typer.echo("files:")
    for f in a["files"]:
        typer.echo(f"  {f['path']:<48} {_size(f.get('size')):>10}  {f['sha256'][:12]}")
    gens = a.get("generations") or []
    if gens:
        typer.echo("generations:")
    for g in gens:
        sheet = f"  {g['contact_sheet']}" if g.get("contact_sheet") else ""
        typer.echo(f"  generations/{g['id']}  {g['kind']}  {g['images']} image(s){sheet}")
    for w in a["warnings"]:
        typer.echo(f"warning: {w}")


@artifacts_app.command("verify")
@command
def verify_cmd(
    artifact_id: str = typer.Argument(..., help="Artifact id, job id, id prefix, or the path of an artifact folder."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Re-hash every file against the sha256 recorded at collection. Exit 1 on any mismatch."""
    result = _registry().verify_artifact(home_path(home), artifact_id)
    if json_out:
        print_json(result.to_dict())
    elif result.ok:
        typer.echo(f"ok: {result.checked} files in {result.path} match their recorded sha256")
    else:
        typer.echo(f"FAILED: {len(result.mismatches)} problem(s) in {result.path}", err=True)
        for m in result.mismatches:
            typer.echo(f"  {m['path']}: {m['problem']}", err=True)
    if not result.ok:
        raise typer.Exit(EXIT_JOB_FAILED)


@artifacts_app.command("export")
@command
def export_cmd(
    artifact_id: str = IdArg,
    fmt: str = typer.Option(..., "--format", "-f", help="Key format: comfyui, diffusers, kohya (musubi)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="File or folder to write (default: ./<id>.<format>.safetensors)."),
    step: str | None = typer.Option(None, "--step", help="Export the kept checkpoint of this step instead of the "
                                    "final weights; 'best' is the step the last 'zlt eval' picked (same as ID@STEP, "
                                    "ID@best)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Write the LoRA in another key format (the registry copy stays as it is)."""
    path = _registry().export_artifact(home_path(home), artifact_id, fmt, out, step=step, overwrite=force)
    if json_out:
        print_json({"ok": True, "path": str(path), "format": fmt})
    else:
        typer.echo(str(path))


@artifacts_app.command("rm")
@command
def rm_cmd(
    artifact_id: str = IdArg,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    force: bool = typer.Option(False, "--force", help="Also delete the current (promoted) version of its style."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Delete an artifact folder (weights, checkpoints, everything) and its index entry."""
    remove_artifact = _job_artifacts().remove_artifact
    h = home_path(home)
    row = resolve_row(h, artifact_id, moving=False)  # a style name or 'latest' is not what one deletes
    if not force:  # refuse before asking
        if current_id(h, row["name"]) == row["id"]:
            remove_artifact(h, row["id"])  # raises the error that says what to do
    if not yes:
        if json_out:
            raise BadInputError(f"deleting '{row['id']}' needs confirmation", hint="pass --yes")
        try:
            files = len(_registry().get_artifact(h, row["id"])["files"])
        except BadInputError:
            files = 0
        try:
            ok = typer.confirm(f"Delete artifact {row['id']} ({files} files in {row['path']})?", default=False)
        except typer.Abort:
            raise BadInputError(f"'{row['id']}' not deleted: no answer", hint="pass --yes to delete without asking") from None
        if not ok:
            typer.echo("Nothing deleted.")
            return
    remove_artifact(h, row["id"], force=force)
    if json_out:
        print_json({"ok": True, "removed": row["id"], "path": row["path"]})
    else:
        typer.echo(f"Deleted {row['id']} ({row['path']}).")


@artifacts_app.command("collect")
@command
def collect_cmd(
    job_dir: Path = typer.Argument(..., help="A finished job's folder (<ZLT_HOME>/jobs/<id>, or its --workdir)."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Build the registry folder of a job by hand (the worker does this when a job finishes)."""
    rec = _job_artifacts().collect(job_dir, home=home_path(home))
    if json_out:
        print_json({"ok": True, "artifact": rec.to_dict()})
        return
    typer.echo(f"{rec.id}\n  {rec.path}")
    for w in rec.warnings:
        typer.echo(f"warning: {w}", err=True)


def register(app: typer.Typer) -> None:
    artifact_versions.register(artifacts_app)
    app.add_typer(artifacts_app, name="artifacts")
