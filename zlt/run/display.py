"""Event sinks for callers: NDJSON lines for agents and CI, a rich progress bar for people.

A sink is `sink(event_dict)`, called for every stamped event (see zlt.core.events.EventStream).
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from zlt.core.events import evaluation_summary


class NdjsonSink:
    """One compact JSON object per line, flushed at once, so a reader can follow the run live."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, d: dict[str, Any]) -> None:
        self.stream.write(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.stream.flush()


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def _fmt_rate(it_s: float | None) -> str:
    if not it_s:
        return "?it/s"
    return f"{it_s:.2f}it/s" if it_s >= 1 else f"{1 / it_s:.2f}s/it"


class RichSink:
    """Phases, warnings and checkpoints as lines; training progress as a live bar with step/total,
    loss, rate and ETA."""

    def __init__(self, console=None) -> None:
        from rich.console import Console

        self.console = console or Console()
        self._progress = None
        self._task = None
        self._phase: str | None = None
        self._last: dict[str, Any] | None = None
        self._first: dict[str, Any] | None = None

    def _start_bar(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
            TextColumn("elapsed {task.fields[elapsed]}"), TextColumn("ETA {task.fields[eta]}"),
            console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("training", total=total, loss="-", rate="?it/s", elapsed="?", eta="?")

    def _print(self, text: str) -> None:
        target = self._progress.console if self._progress is not None else self.console
        target.print(text, highlight=False)

    def _final_rate(self) -> None:
        """The last line stays on screen beside the total elapsed time: show the run's average rate, not the
        last window's."""
        first, last = self._first, self._last
        if self._progress is None or not first or not last:
            return
        try:
            # From the first step this process saw: a resumed run's clock starts at its resume step.
            steps, secs = last["step"] - first["step"], last["elapsed_s"] - first["elapsed_s"]
        except (KeyError, TypeError):
            return
        if steps > 0 and secs > 0:
            self._progress.update(self._task, rate="avg " + _fmt_rate(steps / secs))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, d: dict[str, Any]) -> None:
        from rich.markup import escape

        t = d.get("type")
        if t == "progress":
            self._last = d
            if self._progress is None:
                self._first = d
                self._start_bar(d["total"])
            loss = d.get("loss")
            self._progress.update(  # type: ignore[union-attr]
                self._task, completed=d["step"], total=d["total"],
                loss="nan/inf" if d.get("loss_nonfinite") else "-" if loss is None else f"{loss:.4g}",
                rate=_fmt_rate(d.get("it_s")),
                elapsed=_fmt_seconds(d.get("elapsed_s")), eta=_fmt_seconds(d.get("eta_s")),
            )
        elif t == "phase":
            # One line per phase change; saves show as checkpoint lines, training as the bar.
            phase = d["phase"]
            if phase == self._phase or phase == "saving" or (phase == "training" and self._progress is not None):
                self._phase = phase
                return
            self._phase = phase
            msg = f" {escape(d['message'])}" if d.get("message") else ""
            self._print(f"[cyan]{phase}[/]{msg}")
        elif t == "checkpoint":
            step = f" step {d['step']}" if d.get("step") is not None else ""
            self._print(f"[green]checkpoint{step}[/] {escape(d['path'])}")
        elif t == "sample":
            self._print(f"sample {escape(d['path'])}")
        elif t == "evaluation":
            self._print(evaluation_line(d))
        elif t == "resumed":
            self._print(f"[cyan]resumed[/] from step {d['step']}" + (f" ({escape(d['path'])})" if d.get("path") else ""))
        elif t == "warning":
            self._print(f"[yellow]warning[/] {escape(d['message'])}")
        elif t == "oom":
            if d.get("fatal"):
                self._print(f"[red]out of memory[/] {escape(d['message'])}")
            else:
                self._print(f"[yellow]OOM in a training step, batch skipped ({d.get('attempt')}/3)[/]")
        elif t == "error":
            self._print(f"[red]error[/] {escape(d['message'])}")
        elif t == "finished":
            self._final_rate()
            self.close()



def evaluation_line(d: dict) -> str:
    """One line for a checkpoint scored while training (rich markup), two when it stopped the run."""
    from rich.markup import escape


    line = "[magenta]eval[/]" + escape(evaluation_summary(d)).removeprefix("eval")
    if d.get("decision") == "stop":
        line += f"\n[magenta]early stop[/] {escape(str(d.get('reason') or ''))}"
    return line
