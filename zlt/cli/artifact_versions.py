"""`zlt artifacts diff | promote | resolve | rollback | history | reindex`: versions of a style (thin: the work is
in zlt.artifacts.versions, promote, lineage and reindex). Registered on the `artifacts` group by zlt/cli/artifacts.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from zlt.artifacts.promote import history, promote, rollback
from zlt.artifacts.resolve import resolve_folder, resolve_id
from zlt.cli.common import HomeOpt, JsonOpt, command, home_path, print_json

SHOWN_SCORES = ("style_similarity", "prompt_alignment", "best_step")  # `--json` has every metric
SHORT = {"style_similarity": "style", "prompt_alignment": "prompt", "best_step": "best"}


def _loss(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "-"


def print_style_line(line: dict[str, Any]) -> None:
    rows = line["versions"]
    width = max(len(v["id"]) for v in rows)
    typer.echo(f"    {'VER':>3}  {'ID':<{width}}  {'STEP':>6}  {'LOSS':>8}  {'PARENT':<8}  EVAL")
    for v in rows:
        mark = "*" if v["current"] else " "
        parent = f"v{next((p['version'] for p in rows if p['id'] == v['parent_id']), '?')}" if v["parent_id"] else "-"
        ev = v["eval"] or {}
        shown = {k: ev[k] for k in SHOWN_SCORES if k in ev} or ev
        scores = " ".join(f"{SHORT.get(k, k)}={_loss(s)}" for k, s in shown.items()) or "-"
        missing = "  (folder missing)" if not v["exists"] else ""
        typer.echo(f"  {mark} v{v['version']!s:<3} {v['id']:<{width}}  {v['final_step']!s:>6}  "
                   f"{_loss(v['final_loss']):>8}  {parent:<8}  {scores}{missing}")
    how = "promoted" if line["promoted"] else "newest; none promoted"
    typer.echo(f"* current: {line['current']} ({how})")


def diff_cmd(
    a: str = typer.Argument(..., help="First artifact (id, STYLE@vN, style name, job id)."),
    b: str = typer.Argument(..., help="Second artifact."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Spec, dataset and metric differences between two artifacts."""
    from zlt.artifacts.compare import diff_artifacts  # lazy: compares specs, pulls pydantic

    d = diff_artifacts(home_path(home), a, b)
    if json_out:
        print_json({"ok": True, **d})
        return
    typer.echo(f"A: {d['a']['id']} (v{d['a']['version']})\nB: {d['b']['id']} (v{d['b']['version']})")
    if d["b"]["parent_id"] == d["a"]["id"]:
        typer.echo("B was retrained from A")
    typer.echo("spec:" + ("" if d["spec"] else " same"))
    for k, v in d["spec"].items():
        typer.echo(f"  {k}: {v['from']!r} -> {v['to']!r}")
    ds = d["dataset"]
    same = ds["a_sha256"] == ds["b_sha256"]
    typer.echo(f"dataset: {'same' if same else 'different'} (sha256 {str(ds['a_sha256'])[:12]} / {str(ds['b_sha256'])[:12]})")
    if ds["changes"] is not None:
        for x in ds["changes"]["added"]:
            typer.echo(f"  + {x['file']}  {x['sha256'][:12]}")
        for x in ds["changes"]["removed"]:
            typer.echo(f"  - {x['file']}  {x['sha256'][:12]}")
        typer.echo(f"  {ds['changes']['kept']} image(s) in both")
    elif not same:
        typer.echo("  (image lists unknown for one of them)")
    typer.echo("metrics:")
    for k, v in d["metrics"].items():
        delta = f"  ({v['delta']:+.4g})" if v.get("delta") is not None else ""
        typer.echo(f"  {k}: {_loss(v['a'])} -> {_loss(v['b'])}{delta}")


def promote_cmd(
    artifact_id: str = typer.Argument(..., help="Artifact id, STYLE@vN, job id or unique id prefix."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Make this version the one its style name resolves to (history kept, nothing deleted)."""
    h = home_path(home)
    out = promote(h, resolve_id(h, artifact_id))
    if json_out:
        print_json({"ok": True, **out})
    else:
        typer.echo(f"{out['style']} -> {out['current']}" + (f" (was {out['previous']})" if out["previous"] else ""))


def rollback_cmd(
    style: str = typer.Argument(..., help="Style name (the spec's name)."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Move the current version of a style back one version (history kept, nothing deleted)."""
    out = rollback(home_path(home), style)
    if json_out:
        print_json({"ok": True, **out})
    else:
        typer.echo(f"{out['style']} -> {out['current']} (was {out['previous'] or 'the newest version'})")


def resolve_cmd(
    ref: str = typer.Argument(..., help="Style name (current version), STYLE@vN, 'latest', artifact id, job id, "
                              "unique id prefix, or an artifact folder."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Print the folder a name resolves to (a style name gives its current version)."""
    path = resolve_folder(home_path(home), ref)
    if json_out:
        print_json({"ok": True, "ref": ref, "id": path.name, "path": str(path), "lora": str(path / "lora.safetensors")})
    else:
        typer.echo(str(path))


def history_cmd(
    style: str = typer.Argument(..., help="Style name."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Every promotion and rollback of a style, oldest first."""
    rows = history(home_path(home), style)
    if json_out:
        print_json({"ok": True, "style": style, "history": rows})
        return
    if not rows:
        typer.echo(f"'{style}' was never promoted; it resolves to its newest version")
    for r in rows:
        typer.echo(f"{r['at']}  {r['action']:<8}  {r['artifact_id']}" + (f"  (was {r['previous_id']})" if r["previous_id"] else ""))


def reindex_cmd(
    registry: list[Path] = typer.Option(None, "--registry", help="Also scan this registry folder (repeatable)."),
    json_out: bool = JsonOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Rebuild the index from the registry folders: index complete folders it lacks, report the rest."""
    from zlt.flows.job_artifacts import reindex_artifacts  # lazy: via zlt.jobs pulls pydantic

    rep = reindex_artifacts(home_path(home), list(registry or []))
    if json_out:
        print_json({"ok": True, **rep})
        return
    for i in rep["indexed"]:
        typer.echo(f"indexed {i['id']} (v{i['version']})")
    for p in rep["incomplete"]:
        typer.echo(f"incomplete: {p} (an unfinished collection; remove it once no collector runs)", err=True)
    for s in rep["skipped"]:
        typer.echo(f"skipped: {s['path']}: {s['why']}", err=True)
    for m in rep["missing"]:
        typer.echo(f"missing: {m} is indexed but its folder is gone", err=True)
    if not (rep["indexed"] or rep["incomplete"] or rep["skipped"] or rep["missing"]):
        typer.echo(f"index up to date ({', '.join(rep['registries']) or 'no registry folder yet'})")


def register(artifacts_app: typer.Typer) -> None:
    for name, fn in (("diff", diff_cmd), ("promote", promote_cmd), ("rollback", rollback_cmd),
                     ("resolve", resolve_cmd), ("history", history_cmd), ("reindex", reindex_cmd)):
        artifacts_app.command(name)(command(fn))
