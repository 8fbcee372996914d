"""The body of `zlt dataset caption` (declared in zlt/cli/dataset.py): caption a folder now, or queue a caption job
(--submit). Both go through zlt.flows.captioning's checks: the request gate, the folder, the captioner."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from zlt.cli.common import home_path, print_json
from zlt.flows.captioning import caption_now, submit_caption


def caption(folder: Path, *, request: dict[str, Any], submit: bool, priority: int, no_worker: bool,
            home: Path | None, json_out: bool) -> None:
    if submit:
        st = submit_caption(home_path(home), request, priority=priority, start_worker=not no_worker)
        if json_out:
            print_json({"ok": True, **st})
        else:
            typer.echo(f"queued caption job {st['job_id']}: {st['to_caption']} of {st['images']} image(s) to caption "
                       f"(zlt status {st['job_id']})")
        return
    tty = sys.stderr.isatty() and not json_out

    def progress(done: int, total: int) -> None:
        if tty and total:
            sys.stderr.write(f"\rcaptioning {done}/{total}")
            sys.stderr.flush()

    rep = caption_now(request, progress=progress)
    if tty:
        sys.stderr.write("\n")
    if json_out:
        print_json({"ok": True, **rep.to_dict()})
        return
    tiny = " (tiny random model: the words carry no meaning)" if rep.tiny else ""
    typer.echo(f"captioned {rep.captioned} image(s) with {rep.model}{tiny}; {len(rep.written)} caption(s) written")
    if rep.reused:
        typer.echo(f"  {rep.reused} from the model's earlier output (unchanged image, same model and prompt)")
    if rep.have_caption:
        typer.echo(f"  {rep.have_caption} already had a caption (left alone; --mode all --overwrite replaces them)")
    if rep.unchanged:
        typer.echo(f"  {rep.unchanged} unchanged")
    if rep.backups:
        typer.echo(f"  {len(rep.backups)} old caption(s) kept as NAME.txt.bak")
    for u in rep.unreadable:
        typer.echo(f"  skipped {u['file']}: {u['reason']} ({u['detail']})")
    for w in rep.warnings:
        if not w.endswith(")") or "skipped" not in w:
            typer.echo(f"  warning: {w}")
    typer.echo(f"  records: {rep.records}")
