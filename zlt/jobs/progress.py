"""The event sink a job's runner writes through: phase, progress and checkpoints land in the store.

Progress is throttled (one write per `min_interval_s`, the last one always flushed); phases, checkpoints
and resumes are written at once. The sink also checks a retry's resume: the trainer must report resuming
at the step of the last checkpoint zlt saw, not start again at 0 (a known ai-toolkit/musubi trap).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from zlt.core.events import evaluation_summary
from zlt.jobs.states import IllegalTransition, JobStatus
from zlt.jobs.store import JobStore, LeaseLost

# Phases the runner goes through before the trainer itself starts; the job is `preparing` during these.
PREP_PHASES = frozenset({"preflight", "captioning", "preparing_dataset", "rendering"})
PROGRESS_KEYS = ("step", "total", "loss", "lr", "it_s", "elapsed_s", "eta_s")


class StoreSink:
    def __init__(
        self, store: JobStore, job_id: str, token: str, *, expected_resume_step: int | None = None,
        min_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.token = token
        self.expected_resume_step = expected_resume_step
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.running = False
        self.resumed_step: int | None = None
        self.first_step: int | None = None
        self.warnings: list[str] = []
        self.lost = False
        self.phase: str | None = None  # the runner's last phase event
        self.finished: dict[str, Any] | None = None  # the runner's `finished` event, once seen
        self._pending: dict[str, Any] | None = None
        self._last_write = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, ev: dict[str, Any]) -> None:
        try:
            with self._lock:
                self._handle(ev)
        except LeaseLost:
            self.lost = True

    def _handle(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "phase":
            phase = self.phase = ev.get("phase")
            if phase not in PREP_PHASES:
                self._mark_running(f"trainer started ({phase})")
            self._write(phase=phase, profile=ev.get("profile"))
        elif kind == "progress":
            trainer = self.phase != "captioning"  # captioning's progress counts images, not the trainer's steps
            if trainer:
                self._mark_running("trainer reported progress")
            prog = {k: ev.get(k) for k in PROGRESS_KEYS}
            prog["ts"] = ev.get("ts") or time.time()
            if trainer:
                self._check_first_step(prog.get("step"))
            self._pending = prog
            if self.clock() - self._last_write >= self.min_interval_s:
                self._write()
        elif kind == "checkpoint":
            self._write(checkpoint=(ev.get("path") or "", ev.get("step")))
        elif kind == "resumed":
            self._on_resumed(ev.get("step"), ev.get("path"))
        elif kind == "evaluation":  # a checkpoint scored while training: `zlt status` shows it in the history
            self.store.note(self.job_id, evaluation_note(ev))
        elif kind == "finished":
            self.finished = ev
            self._write()

    def flush(self) -> None:
        try:
            with self._lock:
                if self._pending is not None:
                    self._write()
        except LeaseLost:
            self.lost = True

    def _write(self, *, phase: str | None = None, checkpoint: tuple[str, int | None] | None = None,
               profile: str | None = None) -> None:
        progress, self._pending = self._pending, None
        if progress is None and phase is None and checkpoint is None:
            return
        extra = {"profile": profile} if profile else {}
        ok = self.store.update_progress(self.job_id, self.token, phase=phase, progress=progress, checkpoint=checkpoint,
                                        **extra)
        if not ok:
            raise LeaseLost(f"job {self.job_id}: lease lost")
        self._last_write = self.clock()

    def _mark_running(self, why: str) -> None:
        if self.running:
            return
        self.running = True
        try:
            self.store.transition(self.job_id, JobStatus.RUNNING, token=self.token, message=why,
                                  expect=frozenset({JobStatus.PREPARING}))
        except IllegalTransition:
            pass  # already running (a resumed attempt's first event after a phase event)

    def _on_resumed(self, step: Any, path: Any) -> None:
        self.resumed_step = step if isinstance(step, int) else None
        where = f" ({path})" if path else ""
        self.store.note(self.job_id, f"trainer resumed from step {step}{where}")
        exp = self.expected_resume_step
        if exp is not None and self.resumed_step != exp:
            self._warn(f"trainer resumed from step {step}, but the last checkpoint zlt recorded is step {exp}")

    def _check_first_step(self, step: Any) -> None:
        if self.first_step is not None or not isinstance(step, int):
            return
        self.first_step = step
        exp = self.expected_resume_step
        # Trainers report the step they are on; anything well below the checkpoint means a restart from 0.
        if exp and self.resumed_step is None and step < exp:
            self._warn(f"trainer did not resume: first step {step}, expected to continue after step {exp}")

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.store.note(self.job_id, "warning: " + message)



def evaluation_note(ev: dict[str, Any]) -> str:
    stop = f"; early stop: {ev.get('reason')}" if ev.get("decision") == "stop" else ""
    return evaluation_summary(ev) + stop
