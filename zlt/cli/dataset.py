"""`zlt dataset check`, `prepare` and `caption`: thin commands over `zlt.dataset` and `zlt.caption` (bodies:
zlt/cli/impl/dataset.py, zlt/cli/impl/caption.py)."""

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


@dataset_app.command("caption")
@command
def caption(
    folder: Path = typer.Argument(..., help="The image folder.", show_default=False),
    mode: str = typer.Option("missing", "--mode", help="missing: images without a .txt; all: every image."),
    overwrite: bool = typer.Option(False, "--overwrite", help="--mode all: replace existing captions (the old text "
                                   "is kept beside as NAME.txt.bak)."),
    model: str | None = typer.Option(None, "--model", help="Captioner: a hub id, a local folder, or "
                                     "zlt/tiny-captioner (default: Florence-2 large)."),
    preset: str = typer.Option("style", "--preset", help="style: content only, style words removed; character: "
                               "'a photo of [trigger], ...'."),
    prefix: str = typer.Option("", "--prefix", help="Text put before each caption."),
    suffix: str = typer.Option("", "--suffix", help="Text put after each caption."),
    max_words: int | None = typer.Option(None, "--max-words", help="Cut captions to this many words."),
    submit: bool = typer.Option(False, "--submit", help="Queue a caption job and print its id at once."),
    priority: int = typer.Option(0, "--priority", help="With --submit: queue priority -100..100."),
    no_worker: bool = typer.Option(False, "--no-worker", help="With --submit: only queue; start no worker."),
    home: Path | None = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Write a .txt caption beside every image that lacks one, and a record per caption in captions.jsonl.
    Exit 0: done (unreadable images are skipped and listed); 2: bad input; 3: the captioner is not downloaded."""
    from zlt.cli.impl import caption as impl  # lazy: pulls the captioning stack, kept out of --help

    request = {"path": str(folder), "mode": mode, "overwrite": overwrite, "preset": preset, "prefix": prefix,
               "suffix": suffix, "max_words": max_words, **({"model": model} if model else {})}
    impl.caption(folder, request=request, submit=submit, priority=priority, no_worker=no_worker, home=home,
                 json_out=json_out)

