"""At most one `progress` event per interval, never losing the latest one.

A trainer redraws its bar many times a second; consumers (events.jsonl, the job store, an agent
reading NDJSON) want a steady trickle. The newest progress waits until the interval has passed, and
is flushed early whenever another event goes out (so order is kept) or the run ends. A redraw that
changes nothing but the clock (same step, loss and lr) is not sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from zlt.core.events import Event, Progress


def _key(ev: Progress) -> tuple:
    return (ev.step, ev.total, ev.loss, ev.lr)


class ProgressThrottle:
    def __init__(self, emit: Callable[[Event], object], min_interval_s: float = 0.5, clock=time.monotonic) -> None:
        self._emit = emit
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._last_sent_at = float("-inf")
        self._last_key: tuple | None = None
        self._pending: Progress | None = None

    def push(self, ev: Event) -> None:
        if isinstance(ev, Progress):
            self._pending = ev
            last_step = self._last_key[0] if self._last_key else None
            # The last step of a run goes out at once: it is what a caller waits for.
            if ev.step != last_step and (self._due() or ev.step >= ev.total):
                self._send_pending()
            return
        self.flush()
        self._emit(ev)

    def tick(self) -> None:
        """Called periodically: send a waiting progress once its interval has passed."""
        if self._pending is not None and self._due():
            self._send_pending()

    def flush(self) -> None:
        if self._pending is not None:
            self._send_pending()

    def _due(self) -> bool:
        return self._clock() - self._last_sent_at >= self.min_interval_s

    def _send_pending(self) -> None:
        ev, self._pending = self._pending, None
        if ev is None or _key(ev) == self._last_key:
            return
        self._last_sent_at = self._clock()
        self._last_key = _key(ev)
        self._emit(ev)
