"""The bodies of `zlt generate | transfer` (declared in zlt/cli/generate.py). The request models (pydantic) and the
generation job load here, on first use, never for `zlt --help`; torch and diffusers when a pipeline is needed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from zlt.cli.common import home_path, print_json
from zlt.flows.generation import submit_generation
from zlt.infer import generate, transfer
from zlt.infer.params import parse_lora, parse_request, parse_size

__all__ = ["finish", "loras", "parse_size"]


def loras(artifact: str, scale: float | None, checkpoint: str | None, extra: list[str] | None) -> list[dict[str, Any]]:
    return [{"artifact": artifact, "scale": scale, "checkpoint": checkpoint}] + [parse_lora(x) for x in extra or []]


def _progress(json_out: bool):
    if json_out:
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"image {done}/{total}\n")
        sys.stderr.flush()

    return show


def _notice(line: str) -> None:
    """What is loading, on stderr (also with --json: its stdout stays one JSON document)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def finish(kind: str, request: dict[str, Any], home: Path | None, json_out: bool, submit: bool, priority: int,
           no_worker: bool) -> None:
    params = parse_request(kind, request)
    if submit:
        st = submit_generation(home_path(home), kind, params, priority=priority, start_worker=not no_worker)
        if json_out:
            print_json(st)
        else:
            print(st["job_id"])
            sys.stderr.write(f"queued {kind} ({st['name']}); follow it: zlt status {st['job_id']} --watch\n")
        return
    fn = generate if kind == "generate" else transfer
    result = fn(params, home_path(home), progress=_progress(json_out), notice=_notice)
    if json_out:
        print_json({"ok": True, **result.to_dict()})
        return
    print(result.folder)
    for entry in result.outputs["images"]:
        sys.stderr.write(f"  {entry['file']}  seed {entry['seed']}  {entry['width']}x{entry['height']}"
                         + (f"  ({entry['resized']})" if entry.get("resized") else "") + "\n")
    if result.outputs.get("contact_sheet"):
        sys.stderr.write(f"contact sheet: {result.folder / result.outputs['contact_sheet']}\n")
    sys.stderr.write(f"{len(result.images)} image(s) in {result.outputs['seconds']:.1f} s on "
                     f"{result.outputs['device']['device']} in {result.outputs['precision']} (pipeline load {result.outputs['load_seconds']:.1f} s)\n")
