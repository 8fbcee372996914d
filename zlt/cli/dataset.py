"""`zlt dataset check` and `zlt dataset prepare`: thin commands over `zlt.dataset` (bodies: zlt/cli/impl/dataset.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.cli.common import HomeOpt, JsonOpt, SetOpt, command

dataset_app = typer.Typer(
    help="Check and prepare training images and captions before a GPU hour is spent.",
    no_args_is_help=True,
)

DirArg = typer.Argument(None, help="Dataset folder (default: the spec's dataset.path).", show_default=False)
SpecOpt = typer.Option(None, "--spec", help="Job spec whose dataset settings apply (default: the style preset).")


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


def _impl():
    from zlt.cli.impl import dataset  # lazy: the spec models pull pydantic, kept out of --help

    return dataset


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
    _impl().check(folder, spec_path=spec_path, sets=sets, per_image=per_image, json_out=json_out)


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
    _impl().prepare(folder, out=out, spec_path=spec_path, sets=sets, flip=flip, keep_near_duplicates=keep_near_duplicates,
                     workers=workers, home=home, json_out=json_out)
