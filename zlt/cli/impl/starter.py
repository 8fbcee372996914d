"""The bodies of `zlt schema | init` (declared in zlt/cli/spec_cmds.py): what a new spec starts from. The spec
models (pydantic) load here, on first use, never for `zlt --help`."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt import backends
from zlt.cli.common import print_json
from zlt.core.constants import TINY_MODEL, TURBO_MODEL
from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_text
from zlt.spec.agent_schema import agent_spec_schema
from zlt.spec.presets import PRESETS
from zlt.spec.starter import starter_spec


def schema() -> None:
    print_json(agent_spec_schema(backends.names()))


def init(directory: Path, *, preset: str, model: str | None, tiny: bool, force: bool, json_out: bool) -> None:
    if preset not in PRESETS:
        raise BadInputError(f"--preset {preset!r}: unknown preset", hint=f"use one of: {', '.join(PRESETS)}")
    if tiny and model not in (None, TINY_MODEL):
        raise BadInputError(f"--tiny is --model {TINY_MODEL}; not --model {model}", hint="pass one of them")
    model = TINY_MODEL if tiny else model
    target = directory / "spec.yaml" if directory.suffix not in (".yaml", ".yml") else directory
    if target.exists() and not force:
        raise BadInputError(f"{target}: already exists", hint="pass --force to overwrite, or choose another folder")
    atomic_write_text(target, starter_spec(preset, model=model))
    if json_out:
        print_json({"ok": True, "path": str(target), "preset": preset, "model": model or TURBO_MODEL})
        return
    data = target.parent / "dataset"
    if model == TINY_MODEL:
        typer.echo(f"wrote {target} (preset {preset}, tiny test model {TINY_MODEL} on the CPU); next: put images in "
                   f"{data} (or draw the quick start's: python examples/quickstart/make_dataset.py {data}) "
                   f"and run 'zlt train {target}'")
    else:
        typer.echo(f"wrote {target} (preset {preset}); next: put images in {data} and run 'zlt validate {target}'")
