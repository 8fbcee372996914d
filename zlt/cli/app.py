"""The `zlt` command. Each command group registers itself from its own thin module."""

from __future__ import annotations

import os
import sys

# pydantic scans every installed distribution's entry points for plugins on first use (~20 ms);
# zlt uses none, and `zlt render` must start fast.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")

import typer  # noqa: E402

from zlt import __version__  # noqa: E402
from zlt.cli import (  # noqa: E402
    artifacts,
    dataset,
    generate,
    jobs,
    preflight,
    retrain,
    serve,
    spec_cmds,
    train,
)
from zlt.cli import eval as eval_cmds  # noqa: E402
from zlt.cli.jobs import submit_inference_argv  # noqa: E402

app = typer.Typer(
    name="zlt",
    help="LoRA training on Tongyi-MAI/Z-Image-Turbo: spec in, job id out, LoRA artifacts back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: flags show no '<bool>' value, and option names are never cut to fit 80 columns.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120, "terminal_width": None if sys.stdout.isatty() else 120},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zlt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """zlt — Z-Image LoRA trainer as a callable capability."""


def _register() -> None:
    for module in (spec_cmds, dataset, preflight, train, jobs, artifacts, serve, eval_cmds, generate, retrain):
        module.register(app)


_register()


def main() -> None:
    app(args=submit_inference_argv(sys.argv[1:]), prog_name="zlt")


if __name__ == "__main__":
    main()
