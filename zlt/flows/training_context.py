"""What a training run is asked (`TrainRequest`), what it answers (`RunOutcome`), and the event plumbing and
job-folder writes its stages share (`JobContext`). The run itself is `zlt.flows.training.run_training`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.causes import cause_of
from zlt.core.errors import ZltError
from zlt.core.events import Error, Event, EventStream, Finished, Phase, Sample, Warning_
from zlt.core.fsutil import atomic_write_json, atomic_write_text
from zlt.run.jobfiles import find_samples, sample_step
from zlt.run.throttle import ProgressThrottle
from zlt.spec.load import LoadedSpec, dump_spec_yaml

Sink = Callable[[dict], None]


@dataclass
class TrainRequest:
    loaded: LoadedSpec
    home: Path
    job_id: str
    job_dir: Path
    backend: str | None = None
    profile: str = "auto"
    vram_gb: float | None = None
    skip_preflight: bool = False
    resume: bool = False
    attempt: int = 1
    gpus: list[int] | None = None  # -> CUDA_VISIBLE_DEVICES of the child
    ai_toolkit: str | None = None
    musubi: str | None = None
    stop_grace_s: float = 120.0  # SIGINT -> wait -> SIGTERM -> 10 s -> SIGKILL


@dataclass
class RunOutcome:
    job_id: str
    status: str  # succeeded | failed | cancelled | timeout
    exit_code: int | None
    cause: str | None
    message: str | None
    artifact_id: str | None
    artifact_path: str | None
    checkpoints: list[dict] = field(default_factory=list)
    last_step: int | None = None
    hint: str | None = None
    first_loss: float | None = None
    last_loss: float | None = None
    job_dir: str | None = None
    log_tail: list[str] = field(default_factory=list)
    it_s: float | None = None  # average training speed over the logged steps (model loading excluded)
    stopped_early: str | None = None  # eval.early_stop's reason, when it ended the run (the job still succeeds)

    def to_dict(self) -> dict:
        return asdict(self)


class _SafeSink:
    """A sink that fails (a closed stdout, a broken client) is dropped, never the training."""

    def __init__(self, sink: Sink, warn: Callable[[str], None]) -> None:
        self.sink, self.warn, self.dead = sink, warn, False

    def __call__(self, d: dict) -> None:
        if self.dead:
            return
        try:
            self.sink(d)
        except Exception as e:  # noqa: BLE001 - any consumer error must not stop the trainer
            self.dead = True
            self.warn(f"an event consumer failed and was detached: {e!r}")


class JobContext:
    """The event plumbing and job-folder writes shared by the stages of a run."""

    def __init__(self, req: TrainRequest, sinks: Sequence[Sink]) -> None:
        self.req = req
        self.spec = req.loaded.spec
        self.job_dir = Path(req.job_dir).expanduser().resolve()
        self.job_dir.mkdir(parents=True, exist_ok=True)
        self.output_dir = self.job_dir / "output"
        self.render_dir = self.job_dir / "render"
        self.started_at = time.time()
        self.stream = EventStream(req.job_id, self.job_dir / "events.jsonl")
        self._warnings_pending: list[str] = []
        for s in sinks:
            self.stream.add_sink(_SafeSink(s, self._warnings_pending.append))
        self.throttle = ProgressThrottle(self._emit_now)
        self.on_event: list[Callable[[Event], None]] = []
        self.samples_seen: set[str] = set()
        self.phase: str | None = None

    def emit(self, ev: Event) -> None:
        self.throttle.push(ev)

    def _emit_now(self, ev: Event) -> None:
        leaving_sampling = self.phase == "sampling" and not (isinstance(ev, Phase) and ev.phase == "sampling")
        if isinstance(ev, Phase):
            self.phase = ev.phase
        if isinstance(ev, Sample):
            self.samples_seen.add(str(Path(ev.path)))  # the trainer reported it; the folder scan must not
        elif leaving_sampling:
            self.report_samples()
        self.stream.emit(ev)
        for hook in self.on_event:
            hook(ev)
        while self._warnings_pending:
            self.stream.emit(Warning_(message=self._warnings_pending.pop(0)))

    def report_samples(self) -> None:
        for p in find_samples(self.output_dir, self.samples_seen):
            self.samples_seen.add(str(p))
            self.stream.emit(Sample(path=str(p), step=sample_step(p.name)))

    def phase_event(self, phase: str, message: str = "") -> None:
        self.emit(Phase(phase=phase, message=message))

    def warn(self, message: str) -> None:
        self.emit(Warning_(message=message))

    def write_spec(self) -> None:
        atomic_write_text(self.job_dir / "spec.yaml", dump_spec_yaml(self.spec))

    def write_result(self, outcome: RunOutcome, *, backend: str, profile: str | None, backend_version: str | None,
                     extra: dict[str, Any] | None = None) -> None:
        doc = {
            "job_id": outcome.job_id, "status": outcome.status, "exit_code": outcome.exit_code,
            "cause": outcome.cause, "message": outcome.message, "hint": outcome.hint, "backend": backend,
            "profile": profile, "started_at": self.started_at, "ended_at": time.time(),
            "attempt": self.req.attempt, "backend_version": backend_version,
            "artifact_id": outcome.artifact_id, "artifact_path": outcome.artifact_path,
            "last_step": outcome.last_step, "first_loss": outcome.first_loss, "last_loss": outcome.last_loss,
            "log_tail": outcome.log_tail, **(extra or {}),
        }
        atomic_write_json(self.job_dir / "result.json", doc)

    def finish(self, outcome: RunOutcome) -> None:
        self.emit(Finished(status=outcome.status, exit_code=outcome.exit_code, cause=outcome.cause,
                           message=outcome.message, artifact=outcome.artifact_path))
        self.throttle.flush()
        self.stream.close()


def error_cause(err: ZltError, stage: str) -> str:
    """The failure cause of an error raised before the trainer ran."""
    return cause_of(err, stage).value


def error_event(err: ZltError) -> Error:
    lines = err.lines()
    return Error(message=lines[0], traceback=lines[1:])
