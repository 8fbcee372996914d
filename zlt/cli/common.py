"""Shared CLI plumbing: error reporting with stable exit codes, JSON output, lazy rich console.

Commands stay thin: parse arguments, call a library function, print what it returns.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from zlt.core.errors import BadInputError, ZltError
from zlt.core.paths import zlt_home
from zlt.preflight.home import ensure_home

F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
HomeOpt = typer.Option(None, "--home", help="State folder (default: $ZLT_HOME or ~/.local/share/zlt).")
SetOpt = typer.Option(None, "--set", help="Override a spec field, e.g. --set training.max_steps=3000 (repeatable).")
# Options shared by render, preflight, train and submit: one definition, one help text.
BackendOpt = typer.Option(None, "--backend", "-b", help="Trainer: lightning, ai-toolkit or musubi (default: the spec's).")
ProfileOpt = typer.Option("auto", "--profile", "-p", help="Hardware profile name, or 'auto' (from the GPU).")
VramOpt = typer.Option(None, "--vram-gb", help="Plan for a GPU with this much memory (GiB) instead of detecting it.")
SkipPreflightOpt = typer.Option(False, "--skip-preflight", help="Run without the preflight checks (warned).")
AiToolkitOpt = typer.Option(None, "--ai-toolkit", help="ai-toolkit checkout (default: ZLT_AI_TOOLKIT or the user config).")
MusubiOpt = typer.Option(None, "--musubi", help="musubi-tuner checkout (default: ZLT_MUSUBI or the user config).")


def backend_sets(backend: str | None) -> list[str]:
    """`--backend X` as a spec override, so the spec's own rules (the tiny model trains only on lightning)
    judge the combination that will run: one rule for validate, render, preflight, train and submit."""
    return [f"training.backend={backend}"] if backend else []


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def report_error(err: ZltError, as_json: bool) -> None:
    if as_json:
        print_json({"ok": False, **err.to_dict()})
    else:
        for i, line in enumerate(err.lines()):
            sys.stderr.write(("error: " if i == 0 else "") + line + "\n")


def command(fn: F) -> F:
    """Wrap a command so a ZltError becomes its message and exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ZltError as err:
            report_error(err, bool(kwargs.get("json_out")))
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def existing_folders(paths: list[Path] | None, flag: str) -> list[Path]:
    """The folders a repeatable option names, resolved; one that is not a folder is exit 2 with the fix."""
    out = []
    for p in paths or []:
        p = p.expanduser().resolve()
        if not p.is_dir():
            raise BadInputError(f"{flag} {p}: not a folder", hint=f"create it, or drop that {flag}")
        out.append(p)
    return out


def home_path(home: Path | None) -> Path:
    """The state folder, checked: a file or an unwritable folder is exit 3 with the fix."""
    return ensure_home(zlt_home(home))


_console = None


def console(stderr: bool = False):
    """A rich Console, imported only when something is shown to a person."""
    global _console
    if stderr:
        return _make_console(stderr=True)
    if _console is None:
        _console = _make_console(stderr=False)
    return _console


def _make_console(stderr: bool):
    """On a terminal, rich as usual. Elsewhere (CI logs, a pipe) never wrap: a path or JSON cut mid-name at
    80 columns cannot be copied or parsed; the log viewer wraps lines itself."""
    from rich.console import Console

    con = Console(stderr=stderr)
    if con.is_terminal:
        return con
    return Console(stderr=stderr, soft_wrap=True, width=max(con.width, 200))
