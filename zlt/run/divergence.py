"""A non-finite loss, told once and acted on after a streak: backend-agnostic, fed every parsed progress line.

Why a streak and not the first nan: with fp16 a loss scaler skips a step whose loss overflowed and training goes
on, so one nan/inf is a warning. `NAN_PATIENCE` consecutive logged steps without a finite loss mean the weights
themselves are gone (musubi's `avr_loss` is a running mean, so it stays nan from the first one); with
`training.stop_on_nan` (default on) the runner then stops the trainer and the job fails with cause `diverged`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zlt.core.constants import NAN_PATIENCE
from zlt.core.events import Progress


def normalize_loss(ev: Progress) -> Progress:
    """nan/inf loss -> None with `loss_nonfinite` set (the wire format is strict JSON)."""
    if ev.loss is not None and not math.isfinite(ev.loss):
        ev.loss, ev.loss_nonfinite = None, True
    if ev.lr is not None and not math.isfinite(ev.lr):
        ev.lr = None
    return ev


@dataclass
class DivergenceWatch:
    limit: int | None = NAN_PATIENCE  # None: warn only, never stop
    streak: int = 0
    streak_start: int | None = None  # first step of the current run of non-finite losses
    last_finite_step: int | None = None
    diverged_at: int | None = None  # set once the streak reached the limit
    _last_step: int | None = None
    _last_state: bool | None = None  # whether the last counted loss was non-finite

    def observe(self, ev: Progress) -> str | None:
        """'warn' on the first non-finite loss of a streak, 'stop' when the streak reaches the limit, else None.
        A redraw of a step that says nothing new is not counted again (a redraw that turns the step's loss nan is);
        a progress without any loss changes nothing."""
        if ev.loss_nonfinite:
            state = True
        elif ev.loss is not None:
            state = False
        else:
            return None
        if ev.step == self._last_step and state == self._last_state:
            return None
        self._last_step, self._last_state = ev.step, state
        if not state:
            self.streak, self.streak_start, self.last_finite_step = 0, None, ev.step
            return None
        self.streak += 1
        if self.streak == 1:
            self.streak_start = ev.step
        if self.limit is not None and self.streak == self.limit and self.diverged_at is None:
            self.diverged_at = self.streak_start
            return "stop"
        return "warn" if self.streak == 1 else None
