"""Event sinks for callers: NDJSON lines for agents and CI, a rich progress bar for people.

A sink is `sink(event_dict)`, called for every stamped event (see zlt.core.events.EventStream).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from zlt.core.events import evaluation_summary
from zlt.core.units import rate_text

# Piped output (not a terminal) shows no live bar: a progress line at least this often instead.
PIPED_LINE_EVERY_S = 30.0
# Phases that happen while the bar runs; any other one (collecting, evaluating) ends the bar first.
_DURING_TRAINING = frozenset({"training", "saving", "sampling"})


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


class RichSink:
    """Phases, warnings and checkpoints as lines; training progress as a live bar with step/total,
    loss, rate and ETA. Piped (not a terminal), where no bar is drawn until it ends, a progress line every
    PIPED_LINE_EVERY_S seconds says the same. `clock` is injectable for tests."""

    def __init__(self, console=None, *, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.console import Console

        self.console = console or Console()
        self._progress = None
        self._task = None
        self._phase: str | None = None
        self._last: dict[str, Any] | None = None
        self._first: dict[str, Any] | None = None
        self._clock = clock
        self._line_at: float | None = None  # when the last piped progress line was printed (or the bar began)

    def _start_bar(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        label = self._label()
        self._progress = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
            TextColumn("elapsed {task.fields[elapsed]}"), TextColumn("ETA {task.fields[eta]}"),
            console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, loss="-", rate=rate_text(None), elapsed="?",
                                             eta="?")
        self._line_at = self._clock()

    def _label(self) -> str:
        """What the bar counts: images while a job captions its dataset (dataset.caption.auto), else steps."""
        return "captioning" if self._phase == "captioning" else "training"

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
            self._progress.update(self._task, rate="avg " + rate_text(steps / secs))

    def _piped_line(self, d: dict[str, Any], fields: dict[str, str]) -> None:
        """Not a terminal: no live bar is drawn, so say where training is at least every PIPED_LINE_EVERY_S."""
        if self.console.is_terminal or d["step"] >= d["total"]:
            return  # a terminal shows the live bar; the last step is the bar's own final line
        now = self._clock()
        if self._line_at is not None and now - self._line_at < PIPED_LINE_EVERY_S:
            return
        self._line_at = now
        self._print(f"{self._label()} {d['step']}/{d['total']} loss {fields['loss']} {fields['rate']} "
                    f"elapsed {fields['elapsed']} ETA {fields['eta']}")

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
            fields = {"loss": "nan/inf" if d.get("loss_nonfinite") else "-" if loss is None else f"{loss:.4g}",
                      "rate": rate_text(d.get("it_s")), "elapsed": _fmt_seconds(d.get("elapsed_s")),
                      "eta": _fmt_seconds(d.get("eta_s"))}
            self._progress.update(self._task, completed=d["step"], total=d["total"], **fields)  # type: ignore[union-attr]
            self._piped_line(d, fields)
        elif t == "phase":
            # One line per phase change; saves show as checkpoint lines, training as the bar.
            phase = d["phase"]
            if phase == self._phase or phase == "saving" or (phase == "training" and self._progress is not None):
                self._phase = phase
                return
            if self._progress is not None and phase not in _DURING_TRAINING:
                self._final_rate()  # training is over (or stopped early): its bar first, then what comes after it
                self.close()
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
