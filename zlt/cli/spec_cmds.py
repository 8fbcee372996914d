"""`zlt schema`, `zlt init`, `zlt validate`, `zlt render`: the spec and renderer commands (their bodies:
zlt/cli/impl/starter.py and zlt/cli/impl/spec_cmds.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.cli.common import BackendOpt, JsonOpt, ProfileOpt, SetOpt, VramOpt, command


def _impl():
    from zlt.cli.impl import spec_cmds  # lazy: pulls pydantic (spec models), jinja2 (templates)

    return spec_cmds


def _starter():
    from zlt.cli.impl import starter  # lazy: pulls pydantic (spec models)

    return starter


@command
def schema(json_out: bool = JsonOpt) -> None:
    """Print the job spec's JSON Schema (defaults: what the 'style' preset applies; x-preset-defaults: each preset's)."""
    _starter().schema()  # JSON with or without --json


@command
def init(
    directory: Path = typer.Argument(Path("."), help="Folder to write spec.yaml into."),
    preset: str = typer.Option("style", "--preset", help="style | character"),
    tiny: bool = typer.Option(False, "--tiny", help="The quick start's settings: the tiny test model "
                              "zlt/tiny-zimage on the CPU (same as --model zlt/tiny-zimage)."),
    model: str | None = typer.Option(None, "--model", help="Base model (default Tongyi-MAI/Z-Image-Turbo); "
                                     "zlt/tiny-zimage writes the quick start's settings."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing spec.yaml."),
    json_out: bool = JsonOpt,
) -> None:
    """Write a commented starter spec (--tiny: one that trains the tiny test model on the CPU in about a minute)."""
    _starter().init(directory, preset=preset, model=model, tiny=tiny, force=force, json_out=json_out)


@command
def validate(
    spec: Path = typer.Argument(..., help="Job spec (YAML or JSON)."),
    backend: str | None = BackendOpt,
    sets: list[str] = SetOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Check a spec without rendering; every problem is reported at once. `ok` means submit and train accept it."""
    _impl().validate(spec, backend=backend, sets=sets or [], json_out=json_out)


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
    _impl().render(spec, backend=backend, profile=profile, vram_gb=vram_gb, out=out, explain=explain, sets=sets or [],
                   json_out=json_out)


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
    app.command("init")(init)
    app.command("validate")(validate)
    app.command("render")(render)
