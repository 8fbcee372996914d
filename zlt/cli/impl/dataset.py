"""The bodies of `zlt dataset check | prepare` (declared in zlt/cli/dataset.py). The spec models (pydantic) and the
dataset checks load here, on first use, never for `zlt --help`."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.cli.common import home_path, print_json
from zlt.core.errors import EXIT_BAD_INPUT, BadInputError
from zlt.core.paths import cache_dir
from zlt.dataset import check_dataset, needs_prepared_flip, prepare_cached, prepare_dataset
from zlt.dataset.dupes import NEAR_DUPLICATE_DISTANCE
from zlt.dataset.report import render_text
from zlt.spec import JobSpec, load_spec, load_spec_data


def _load(spec_path: Path | None, sets: list[str] | None) -> JobSpec:
    if spec_path is not None:
        return load_spec(spec_path, sets).spec
    return load_spec_data({}, sets=sets or []).spec


def _folder(folder: Path | None, spec_path: Path | None, spec: JobSpec) -> Path:
    if folder is not None:
        return folder
    if spec_path is None:
        raise BadInputError("no dataset folder given", hint="pass DIR, or --spec with dataset.path set")
    return Path(spec.dataset.path)


def check(folder: Path | None, *, spec_path: Path | None, sets: list[str] | None, per_image: bool,
          json_out: bool) -> None:
    spec = _load(spec_path, sets)
    report = check_dataset(_folder(folder, spec_path, spec), spec)
    if json_out:
        print_json(report.to_dict())
    else:
        for line in render_text(report, per_image=per_image):
            typer.echo(line)
    if report.has_errors:
        raise typer.Exit(EXIT_BAD_INPUT)


def prepare(folder: Path | None, *, out: Path | None, spec_path: Path | None, sets: list[str] | None,
            flip: bool | None, keep_near_duplicates: bool, workers: int | None, home: Path | None,
            json_out: bool) -> None:
    spec = _load(spec_path, sets)
    src = _folder(folder, spec_path, spec)
    do_flip = needs_prepared_flip(spec) if flip is None else flip
    if out is None:
        if keep_near_duplicates:
            raise BadInputError("--keep-near-duplicates needs --out", hint="pass --out OUT")
        result = prepare_cached(src, spec, cache_dir(home_path(home)), flip=do_flip, workers=workers)
    else:
        near = None if keep_near_duplicates else NEAR_DUPLICATE_DISTANCE
        result = prepare_dataset(src, out, spec, flip=do_flip, workers=workers, near_duplicate_distance=near)
    if json_out:
        print_json({"ok": True, **result.to_dict()})
        return
    if result.reused:
        typer.echo(f"unchanged source: {result.out_dir} is up to date (no image work)")
    else:
        reused = f", {result.images_reused} re-used from the previous prepare" if result.images_reused else ""
        typer.echo(f"prepared {result.num_images} image(s) from {result.num_sources} source(s) into {result.out_dir}{reused}")
    typer.echo(f"  dataset sha256 {result.dataset_sha256}")
    typer.echo(f"  manifest {result.manifest_path}")
    if result.skipped:
        typer.echo(f"  skipped {len(result.skipped)}:")
        for s in result.skipped:
            typer.echo(f"    {s['reason']:<20} {s['file']}: {s['detail']}")
