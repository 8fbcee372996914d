"""`zlt dataset check` and `zlt dataset prepare`: thin commands over `zlt.dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from zlt.cli.common import HomeOpt, JsonOpt, SetOpt, command, print_json
from zlt.core.errors import EXIT_BAD_INPUT, BadInputError

if TYPE_CHECKING:
    from zlt.spec import JobSpec

dataset_app = typer.Typer(
    help="Check and prepare training images and captions before a GPU hour is spent.",
    no_args_is_help=True,
)

DirArg = typer.Argument(None, help="Dataset folder (default: the spec's dataset.path).", show_default=False)
SpecOpt = typer.Option(None, "--spec", help="Job spec whose dataset settings apply (default: the style preset).")


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


def _load(spec_path: Path | None, sets: list[str] | None) -> JobSpec:
    from zlt.spec import load_spec, load_spec_data

    if spec_path is not None:
        return load_spec(spec_path, sets).spec
    return load_spec_data({}, sets=sets or []).spec


def _folder(folder: Path | None, spec_path: Path | None, spec: JobSpec) -> Path:
    if folder is not None:
        return folder
    if spec_path is None:
        raise BadInputError("no dataset folder given", hint="pass DIR, or --spec with dataset.path set")
    return Path(spec.dataset.path)


@dataset_app.command("check")
@command
def check(
    folder: Path | None = DirArg,
    spec_path: Path | None = SpecOpt,
    sets: list[str] | None = SetOpt,
    per_image: bool = typer.Option(False, "--images", help="Also print one line per image."),
    json_out: bool = JsonOpt,
) -> None:
    """Report every problem with the images and captions. Exit 0: nothing blocks training; 2: something does."""
    from zlt.dataset import check_dataset
    from zlt.dataset.report import render_text

    spec = _load(spec_path, sets)
    report = check_dataset(_folder(folder, spec_path, spec), spec)
    if json_out:
        print_json(report.to_dict())
    else:
        for line in render_text(report, per_image=per_image):
            typer.echo(line)
    if report.has_errors:
        raise typer.Exit(EXIT_BAD_INPUT)


@dataset_app.command("prepare")
@command
def prepare(
    folder: Path | None = DirArg,
    out: Path | None = typer.Option(
        None, "--out", help="Folder to write (replaced only if an earlier prepare wrote it). "
        "Default: a content-addressed folder in the zlt cache."),
    spec_path: Path | None = SpecOpt,
    sets: list[str] | None = SetOpt,
    flip: bool | None = typer.Option(
        None, "--flip/--no-flip", help="Also write mirrored copies. Default: only when the spec asks for flips "
        "and its trainer cannot flip itself (musubi)."),
    keep_near_duplicates: bool = typer.Option(False, "--keep-near-duplicates", help="Drop byte-identical copies only."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes to use (default: all cores)."),
    home: Path | None = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Write a clean training folder: RGB, EXIF-rotated, resized, captioned, de-duplicated, with manifest.json."""
    from zlt.cli.common import home_path
    from zlt.core.paths import cache_dir
    from zlt.dataset import needs_prepared_flip, prepare_cached, prepare_dataset
    from zlt.dataset.dupes import NEAR_DUPLICATE_DISTANCE

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
