"""The bodies of `zlt validate | render` (declared in zlt/cli/spec_cmds.py). The spec models (pydantic), the
backends and their templates (jinja2) load here, on first use, never for `zlt --help`. `schema` and `init` are
zlt/cli/impl/starter.py: `zlt render` loads none of theirs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from zlt.backends import render_spec
from zlt.backends.parity import explain_rows
from zlt.cli.common import console, print_json
from zlt.flows.gate import admit
from zlt.preflight.select import select_profile
from zlt.render import RenderContext, write_render


def validate(spec: Path, *, backend: str | None, sets: list[str], json_out: bool) -> None:
    loaded = admit(spec, sets=sets, backend=backend, mode="validate").loaded
    if json_out:
        print_json({"ok": True, "source": loaded.source, "warnings": loaded.warnings, "spec": loaded.resolved()})
    else:
        for w in loaded.warnings:  # `note:` as render prints them (docs/spec.md)
            typer.echo(f"note: {w}", err=True)
        s = loaded.spec
        typer.echo(f"{spec}: ok — {s.name} ({s.preset}), backend {s.training.backend}, "
                   f"{s.training.max_steps} steps, rank {s.model.lora.rank}, {s.dataset.resolution} px")


def _explain(rows: list[dict], result, notes: list[str]) -> None:
    from rich.table import Table

    table = Table(title=f"what {result.backend} does with each field (profile {result.profile})")
    for col in ("field", "value", "source", result.backend):
        table.add_column(col)
    for row in rows:
        value = row["value"]
        shown = repr(value) if isinstance(value, str) else str(value)
        if "rendered" in row and row["rendered"] != value:  # e.g. training_adapter 'auto' -> null on the tiny model
            shown += " -> " + ("null" if row["rendered"] is None else repr(row["rendered"]))
        does = ("zlt: " if row["carried_by"] == "zlt" else "") + row["where"]
        extra = [f"[yellow]warning: {w}[/yellow]" for w in row["warnings"]] + [f"[cyan]{n}[/cyan]" for n in row["notes"]]
        table.add_row(row["field"], shown, row["source"], "\n".join([does, *extra]))
    con = console(stderr=True)
    con.print(table)
    con.print(f"profile: {result.profile}" + (f" ({'; '.join(notes)})" if notes else ""))


def render(spec: Path, *, backend: str | None, profile: str, vram_gb: float | None, out: Path | None, explain: bool,
           sets: list[str], json_out: bool) -> None:
    loaded = admit(spec, sets=sets, backend=backend, mode="render").loaded
    be = loaded.spec.training.backend
    prof, notes = select_profile(loaded.spec, be, profile, vram_gb)
    ctx = RenderContext(config_dir=out.resolve() if out else None, output_dir=(out.resolve() / "output") if out else Path("output"))
    result = render_spec(loaded.spec, be, prof, ctx)
    warnings = loaded.warnings + notes + result.warnings
    rows = None
    if explain:
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
    sys.stdout.write("# --- argv ---\n")
    for argv in result.argv:
        sys.stdout.write(json.dumps(argv) + "\n")
