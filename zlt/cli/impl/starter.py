"""The bodies of `zlt schema | init` (declared in zlt/cli/spec_cmds.py): what a new spec starts from. The spec
models (pydantic) load here, on first use, never for `zlt --help`."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt import backends
from zlt.cli.common import print_json
from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_text
from zlt.spec.agent_schema import agent_spec_schema
from zlt.spec.presets import PRESETS
from zlt.spec.starter import starter_spec


def schema() -> None:
    print_json(agent_spec_schema(backends.names()))


def init(directory: Path, *, preset: str, force: bool, json_out: bool) -> None:
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
