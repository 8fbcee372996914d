"""Turns a stream of parsed lines into the event stream a caller sees.

Parsers are pure, one line at a time; what needs memory lives here:
- phases are emitted when they change, and the first training progress opens the `training` phase;
- tracebacks are collected per stream and become one `error` event with the last frames;
- a checkpoint is announced one line late (musubi prints `saving checkpoint:` before writing);
- a musubi resume restarts its counter at 0, so steps are shifted by `step_offset`;
- every training progress (unthrottled) goes to `on_progress`: the run's one loss/speed series;
- a nan/inf loss is made strict JSON (null + `loss_nonfinite`), warned about once per streak (`diverged`), and a
  long streak calls `on_diverged` (see divergence.py);
- `saving` tells the supervisor a save is in progress, so a stop request waits for it;
- the last 40 lines are kept for failure reports.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from math import isfinite

from zlt.core.events import Checkpoint, Error, Event, Finished, Oom, Phase, Progress, Resumed, Warning_
from zlt.run.bars import split_glued
from zlt.run.divergence import DivergenceWatch, normalize_loss
from zlt.run.parse_common import TRACEBACK_START

TAIL_LINES = 400  # raw lines kept; failure reports show the last 40 after folding bar redraws
TRACEBACK_KEEP = 40
MAX_WARNINGS = 100
_CHAIN_LINES = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


@dataclass
class RunFacts:
    """What the interpreter learned from the output, for classification and the final summary."""

    first_loss: float | None = None
    last_loss: float | None = None
    last_step: int | None = None
    total: int | None = None
    oom_skips: int = 0
    fatal_oom: str | None = None
    errors: list[Event] = field(default_factory=list)
    warnings: int = 0
    job_stopped: bool = False  # ai-toolkit printed "Job stopped" (SIGINT)
    checkpoints: int = 0
    diverged_at: int | None = None  # first step of the non-finite loss streak that stopped the run
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


class LogInterpreter:
    def __init__(
        self,
        parse: Callable[[str], Event | None],
        emit: Callable[[Event], object],
        *,
        facts: RunFacts | None = None,
        step_offset: int = 0,
        progress_allowed: bool = True,
        on_progress: Callable[[Progress], object] | None = None,
        divergence: DivergenceWatch | None = None,
        on_diverged: Callable[[int], object] | None = None,
    ) -> None:
        self._parse = parse
        self._emit = emit
        self.facts = facts if facts is not None else RunFacts()
        self.step_offset = step_offset
        self.progress_allowed = progress_allowed
        self.phase: tuple[str, str] | None = None
        self.saving = False
        self._pending_ckpt: Checkpoint | None = None
        self._tracebacks: dict[str, list[str]] = {}
        self._resume_path: str | None = None
        self._warned: set[str] = set()
        self.on_progress = on_progress
        self.divergence = divergence if divergence is not None else DivergenceWatch()
        self.on_diverged = on_diverged

    # -- input -------------------------------------------------------------------------------
    def feed_lines(self, lines: list[str], stream: str = "stdout") -> None:
        """Lines that arrived together. A bar redraw followed at once by a redraw of the same bar at the same
        step is superseded (its loss is replaced by the next one's), so it is kept in the tail but not parsed."""
        last = len(lines) - 1
        for i, line in enumerate(lines):
            if i < last:
                k = line.find("%|")
                if k >= 3:
                    nxt = lines[i + 1]
                    if nxt.find("%|") == k and nxt[:k - 3] == line[:k - 3]:
                        # same bar; same step when the text up to `n/` matches (percent, bar and n)
                        j = line.find("/", k)
                        if j > 0 and nxt.find("/", k) == j and nxt[k:j] == line[k:j]:
                            self.facts.tail.append(line)
                            continue
            self.feed(line, stream)

    def feed(self, line: str, stream: str = "stdout") -> None:
        if "%|" in line and not line.endswith("]"):
            parts = split_glued(line)
            if len(parts) > 1:
                for part in parts:
                    self.feed(part, stream)
                return
        self.facts.tail.append(line)
        if self._pending_ckpt is not None:
            ckpt, self._pending_ckpt = self._pending_ckpt, None
            self._out(ckpt)
        tb = self._tracebacks.get(stream)
        if tb is not None or TRACEBACK_START in line:
            self._traceback_line(stream, line)
        ev = self._parse(line)
        if ev is not None:
            self._handle(ev)

    def finish(self) -> None:
        """End of the process: flush what waits for a next line."""
        for stream in list(self._tracebacks):
            self._close_traceback(stream, None)
        if self._pending_ckpt is not None:
            ckpt, self._pending_ckpt = self._pending_ckpt, None
            self._out(ckpt)

    # -- tracebacks ----------------------------------------------------------------------------
    def _traceback_line(self, stream: str, line: str) -> None:
        tb = self._tracebacks.get(stream)
        if tb is None:
            self._tracebacks[stream] = [line[line.index(TRACEBACK_START):]]
            return
        if line.startswith(TRACEBACK_START) and tb and tb[-1] in _CHAIN_LINES:
            tb.append(line)
            return
        if line[:1] in (" ", "\t") or line in _CHAIN_LINES or line.startswith(TRACEBACK_START):
            tb.append(line)
            if len(tb) > 4 * TRACEBACK_KEEP:
                del tb[1:-TRACEBACK_KEEP]
            return
        # The first unindented line after the frames is the exception itself.
        tb.append(line)
        self._close_traceback(stream, line)

    def _close_traceback(self, stream: str, message: str | None) -> None:
        tb = self._tracebacks.pop(stream, None)
        if not tb:
            return
        self._out(Error(message=(message or tb[-1]).strip(), traceback=tb[-TRACEBACK_KEEP:]))

    # -- events --------------------------------------------------------------------------------
    def _handle(self, ev: Event) -> None:
        if isinstance(ev, Progress):
            if not self.progress_allowed:
                return
            if self.step_offset:
                ev.step += self.step_offset
                ev.total += self.step_offset
            self.saving = ev.step >= ev.total  # the final save follows the last step
            if self.phase is None or self.phase[0] != "training":
                self._set_phase("training", "")
            loss = ev.loss
            if loss is not None and not isfinite(loss) or ev.lr is not None and not isfinite(ev.lr):
                normalize_loss(ev)
                loss = ev.loss
            f = self.facts
            if loss is not None:
                if f.first_loss is None:
                    f.first_loss = loss
                f.last_loss = loss
            f.last_step, f.total = ev.step, ev.total
            if self.on_progress is not None:
                self.on_progress(ev)
            action = self.divergence.observe(ev)
            self._emit(ev)  # not an Error: skip _out's bookkeeping (this is the per-line hot path)
            if action is not None:
                self._diverging(ev, action)
        elif isinstance(ev, Phase):
            self.saving = ev.phase == "saving"
            if ev.message.startswith("resuming from "):
                self._resume_path = ev.message[len("resuming from "):]
            self._set_phase(ev.phase, ev.message)
        elif isinstance(ev, Checkpoint):
            if ev.step is not None and self.step_offset:
                ev.step += self.step_offset
            self.saving = True
            self.facts.checkpoints += 1
            self._set_phase("saving", "")
            self._pending_ckpt = ev
        elif isinstance(ev, Resumed):
            if ev.path is None:
                ev.path = self._resume_path
            self._out(ev)
        elif isinstance(ev, Oom):
            if ev.fatal:
                if self.facts.fatal_oom is not None:
                    return
                self.facts.fatal_oom = ev.message
            else:
                self.facts.oom_skips += 1
            self._out(ev)
        elif isinstance(ev, Warning_):
            if "Job stopped" in ev.message:
                self.facts.job_stopped = True
            if ev.message in self._warned or len(self._warned) >= MAX_WARNINGS:
                return
            self._warned.add(ev.message)
            self.facts.warnings += 1
            self._out(ev)
        elif isinstance(ev, Finished):
            return  # only the runner decides how a job finished
        else:
            self._out(ev)

    def _diverging(self, ev: Progress, action: str) -> None:
        watch = self.divergence
        if watch.streak == 1:
            good = f"; last finite loss at step {watch.last_finite_step}" if watch.last_finite_step is not None else ""
            self._out(Warning_(message=f"loss is not finite (nan/inf) at step {ev.step}: training may be diverging{good}",
                               code="diverged"))
        if action == "stop":
            self.facts.diverged_at = watch.diverged_at
            self._out(Warning_(message=f"loss not finite for {watch.streak} logged steps in a row since step "
                                       f"{watch.diverged_at}: stopping the trainer (training.stop_on_nan)",
                               code="diverged"))
            if self.on_diverged is not None:
                self.on_diverged(watch.diverged_at)

    def _set_phase(self, phase: str, message: str) -> None:
        key = (phase, message)
        if self.phase is not None and (self.phase == key or (phase == self.phase[0] and not message)):
            return
        self.phase = key
        self._out(Phase(phase=phase, message=message))

    def _out(self, ev: Event) -> None:
        if isinstance(ev, Error):
            self.facts.errors.append(ev)
            del self.facts.errors[:-10]
        self._emit(ev)

