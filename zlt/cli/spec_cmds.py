"""`zlt schema`, `zlt init`, `zlt validate`, `zlt render`: the spec and renderer commands."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from zlt.cli.common import BackendOpt, JsonOpt, ProfileOpt, SetOpt, VramOpt, command, print_json
from zlt.core.errors import BadInputError


@command
def schema(json_out: bool = JsonOpt) -> None:
    """Print the job spec's JSON Schema (defaults: what the 'style' preset applies; x-preset-defaults: each preset's)."""
    from zlt.spec.agent_schema import agent_spec_schema

    print_json(agent_spec_schema())


@command
def init(
    directory: Path = typer.Argument(Path("."), help="Folder to write spec.yaml into."),
    preset: str = typer.Option("style", "--preset", help="style | character"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing spec.yaml."),
    json_out: bool = JsonOpt,
) -> None:
    """Write a commented starter spec."""
    from zlt.core.fsutil import atomic_write_text
    from zlt.spec.presets import PRESETS
    from zlt.spec.starter import starter_spec

    if preset not in PRESETS:
        raise BadInputError(f"--preset {preset!r}: unknown preset", hint=f"use one of: {', '.join(PRESETS)}")
    target = directory / "spec.yaml" if directory.suffix not in (".yaml", ".yml") else directory
    if target.exists() and not force:
        raise BadInputError(f"{target}: already exists", hint="pass --force to overwrite, or choose another folder")
    atomic_write_text(target, starter_spec(preset))
    if json_out:
        print_json({"ok": True, "path": str(target), "preset": preset})
    else:
        typer.echo(f"wrote {target} (preset {preset}); next: put images in {target.parent / 'dataset'} "
                   f"and run 'zlt validate {target}'")


@command
def validate(
    spec: Path = typer.Argument(..., help="Job spec (YAML or JSON)."),
    backend: str | None = BackendOpt,
    sets: list[str] = SetOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Check a spec without rendering; every problem is reported at once. `ok` means submit and train accept it."""
    from zlt.flows.gate import admit  # lazy: pulls pydantic (the spec models), kept out of `zlt --help`

    loaded = admit(spec, sets=sets or [], backend=backend, mode="validate").loaded
    if json_out:
        print_json({"ok": True, "source": loaded.source, "warnings": loaded.warnings, "spec": loaded.resolved()})
    else:
        for w in loaded.warnings:
            typer.echo(f"warning: {w}", err=True)
        s = loaded.spec
        typer.echo(f"{spec}: ok — {s.name} ({s.preset}), backend {s.training.backend}, "
                   f"{s.training.max_steps} steps, rank {s.model.lora.rank}, {s.dataset.resolution} px")


def _explain(rows: list[dict], result, notes: list[str]) -> None:
    from rich.table import Table

    from zlt.cli.common import console

    table = Table(title=f"what {result.backend} does with each field (profile {result.profile})")
    for col in ("field", "value", "source", result.backend):
        table.add_column(col)
    for row in rows:
        value = row["value"]
        shown = repr(value) if isinstance(value, str) else str(value)
        does = ("zlt: " if row["carried_by"] == "zlt" else "") + row["where"]
        extra = [f"[yellow]warning: {w}[/yellow]" for w in row["warnings"]] + [f"[cyan]{n}[/cyan]" for n in row["notes"]]
        table.add_row(row["field"], shown, row["source"], "\n".join([does, *extra]))
    con = console(stderr=True)
    con.print(table)
    con.print(f"profile: {result.profile}" + (f" ({'; '.join(notes)})" if notes else ""))


@command
def render(
    spec: Path = typer.Argument(..., help="Job spec (YAML or JSON)."),
    backend: str | None = BackendOpt,
    profile: str = ProfileOpt,
    vram_gb: float | None = VramOpt,
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the files (and argv.json) into this folder."),
    explain: bool = typer.Option(False, "--explain", help="Show where every value came from (on stderr)."),
    sets: list[str] = SetOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Render the trainer config (ai-toolkit YAML, or musubi TOML + argv) for a spec and hardware profile."""
    from zlt.backends import render_spec
    from zlt.flows.gate import admit  # lazy: pulls pydantic (the spec models), kept out of `zlt --help`
    from zlt.preflight.select import select_profile
    from zlt.render import RenderContext, write_render

    loaded = admit(spec, sets=sets or [], backend=backend, mode="render").loaded
    be = loaded.spec.training.backend
    prof, notes = select_profile(loaded.spec, be, profile, vram_gb)
    ctx = RenderContext(config_dir=out.resolve() if out else None, output_dir=(out.resolve() / "output") if out else Path("output"))
    result = render_spec(loaded.spec, be, prof, ctx)
    warnings = loaded.warnings + notes + result.warnings
    rows = None
    if explain:
        from zlt.backends.parity import explain_rows

        rows = explain_rows(loaded, result)
        if not json_out:
            _explain(rows, result, notes)
    if out is not None:
        written = write_render(result, out)
    if json_out:
        obj = result.to_dict()
        obj["warnings"] = warnings
        if rows is not None:
            obj["explain"] = rows
        if out is not None:
            obj["written"] = [str(p) for p in written]
        print_json(obj)
        return
    for w in warnings:
        typer.echo(f"note: {w}", err=True)
    if out is not None:
        for p in written:
            typer.echo(f"wrote {p}")
        return
    for name, text in result.files.items():
        if len(result.files) > 1 or result.argv:
            sys.stdout.write(f"# --- {name} ---\n")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    import json

    sys.stdout.write("# --- argv ---\n")
    for argv in result.argv:
        sys.stdout.write(json.dumps(argv) + "\n")


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
    app.command("init")(init)
    app.command("validate")(validate)
    app.command("render")(render)
