"""JSON event lines on stdout, in the runner's schema (`zlt.core.events`), so its parser is `json.loads`.

stdout carries events only: `take_stdout()` keeps the real stdout for events and points file descriptor 1 (and
`sys.stdout`) at stderr, so a stray print from a library lands in the log instead of corrupting the stream.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from typing import IO

from zlt.core.events import (
    Checkpoint,
    Error,
    Event,
    Oom,
    Phase,
    Progress,
    Resumed,
    Sample,
    Warning_,
    event_to_dict,
)


def take_stdout() -> IO[str]:
    """A line-buffered handle on the original stdout; afterwards fd 1 and sys.stdout go to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")


class EventWriter:
    """Writes events; progress is throttled to one per `interval_s` except the steps that must show."""

    def __init__(self, stream: IO[str] | None, *, interval_s: float = 0.5, enabled: bool = True, clock=time.monotonic):
        self.stream = stream
        self.enabled = enabled and stream is not None
        self.interval_s = interval_s
        self.clock = clock
        self._last_progress = float("-inf")
        self._start: float | None = None
        self._start_step = 0
        self._window: deque[tuple[float, int]] = deque(maxlen=20)

    def emit(self, ev: Event) -> None:
        if not self.enabled:
            return
        try:
            self.stream.write(json.dumps(event_to_dict(ev), ensure_ascii=False) + "\n")  # type: ignore[union-attr]
            self.stream.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, ValueError):  # the reader is gone (or the stream closed): keep training, stop telling
            self.enabled = False

    def phase(self, phase: str, message: str = "") -> None:
        self.emit(Phase(phase=phase, message=message))
        if message:
            sys.stderr.write(f"[zlt.trainer] {phase}: {message}\n")

    def warning(self, message: str) -> None:
        self.emit(Warning_(message=message))
        sys.stderr.write(f"[zlt.trainer] warning: {message}\n")

    def error(self, message: str, traceback_lines: list[str] | None = None) -> None:
        self.emit(Error(message=message, traceback=traceback_lines or []))

    def oom(self, message: str) -> None:
        self.emit(Oom(fatal=True, message=message))

    def checkpoint(self, path: str, step: int) -> None:
        self.emit(Checkpoint(path=path, step=step))

    def sample(self, path: str, step: int) -> None:
        self.emit(Sample(path=path, step=step))

    def resumed(self, step: int, path: str | None) -> None:
        self.emit(Resumed(step=step, path=path))

    def start_training(self, start_step: int) -> None:
        self._start = self.clock()
        self._start_step = start_step
        self._window.clear()
        self._window.append((self._start, start_step))
        self._last_progress = float("-inf")

    def progress(self, step: int, total: int, loss: float | None, lr: float | None, *, force: bool = False) -> bool:
        """Emit when forced, on the first step of this session, on the last step, or after interval_s."""
        now = self.clock()
        if self._start is None:
            self.start_training(step - 1)
        self._window.append((now, step))
        first = step == self._start_step + 1
        if not (force or first or step >= total or now - self._last_progress >= self.interval_s):
            return False
        self._last_progress = now
        t0, s0 = self._window[0]
        it_s = (step - s0) / (now - t0) if now > t0 and step > s0 else None
        elapsed = now - self._start if self._start is not None else None
        eta = (total - step) / it_s if it_s else None
        self.emit(Progress(
            step=step, total=total,
            loss=None if loss is None else float(f"{loss:.6g}"),
            lr=None if lr is None else float(f"{lr:.6g}"),
            it_s=None if it_s is None else round(it_s, 4),
            elapsed_s=None if elapsed is None else round(elapsed, 3),
            eta_s=None if eta is None else round(eta, 1),
        ))
        return True
