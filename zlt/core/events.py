"""Typed progress events: the one schema shared by parsers, the built-in trainer, the job store,
`--json` output, `events.jsonl` and the HTTP event stream.

A parser produces an event without identity; `EventStream.emit` stamps it with job id, sequence
number and timestamp. On the wire an event is a flat JSON object with a `type` key.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, ClassVar

PHASES = (
    "preflight", "preparing_dataset", "rendering", "loading_model", "quantizing", "caching_latents",
    "caching_text", "training", "sampling", "saving", "collecting", "evaluating",
)
FINISH_STATUSES = ("succeeded", "failed", "cancelled", "timeout")


@dataclass(slots=True)
class Phase:
    type: ClassVar[str] = "phase"
    phase: str
    message: str = ""
    profile: str | None = None  # the hardware profile the run resolved (on the `rendering` phase only)


@dataclass(slots=True)
class Progress:
    type: ClassVar[str] = "progress"
    step: int
    total: int
    loss: float | None = None
    lr: float | None = None
    it_s: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    loss_nonfinite: bool = False  # the trainer logged nan/inf: `loss` is null on the wire (strict JSON)


@dataclass(slots=True)
class Checkpoint:
    type: ClassVar[str] = "checkpoint"
    path: str
    step: int | None = None


@dataclass(slots=True)
class Sample:
    type: ClassVar[str] = "sample"
    path: str
    step: int | None = None


@dataclass(slots=True)
class Resumed:
    type: ClassVar[str] = "resumed"
    step: int
    path: str | None = None


@dataclass(slots=True)
class Warning_:
    type: ClassVar[str] = "warning"
    message: str
    code: str | None = None  # machine-readable kind, e.g. "diverged"


@dataclass(slots=True)
class Oom:
    type: ClassVar[str] = "oom"
    fatal: bool
    message: str
    attempt: int | None = None


@dataclass(slots=True)
class Error:
    type: ClassVar[str] = "error"
    message: str
    traceback: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Evaluation:
    """A checkpoint scored while training (eval.every); `decision` is eval.early_stop's verdict when it is on."""

    type: ClassVar[str] = "evaluation"
    step: int
    style_similarity: float | None = None
    prompt_alignment: float | None = None
    memorisation: float | None = None
    diversity: float | None = None
    base: bool = False  # the base model's row (step 0), the yardstick of prompt alignment
    decision: str | None = None  # "continue" | "stop"; None: early stop is off
    reason: str | None = None


@dataclass(slots=True)
class Finished:
    type: ClassVar[str] = "finished"
    status: str
    exit_code: int | None = None
    cause: str | None = None
    message: str | None = None
    artifact: str | None = None


Event = Phase | Progress | Checkpoint | Sample | Resumed | Warning_ | Oom | Error | Evaluation | Finished
EVENT_TYPES: dict[str, type] = {
    c.type: c for c in (Phase, Progress, Checkpoint, Sample, Resumed, Warning_, Oom, Error, Evaluation, Finished)
}


def evaluation_summary(d: dict[str, Any]) -> str:
    """One line for an `evaluation` event (a dict, as on the wire): the history note and the terminal line."""
    def num(key: str) -> str:
        v = d.get(key)
        return f"{v:.4f}" if isinstance(v, (int, float)) else "-"

    who = "base model" if d.get("base") else f"step {d.get('step')}"
    return (f"eval {who}: style {num('style_similarity')}, alignment {num('prompt_alignment')}, "
            f"memorisation {num('memorisation')}, diversity {num('diversity')}")


def finite_or_none(x: Any) -> Any:
    """nan and +-inf as None: JSON has no such numbers and strict parsers reject Python's `NaN`."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def event_to_dict(ev: Event) -> dict[str, Any]:
    """A flat dict that is valid strict JSON: a non-finite loss becomes null with `loss_nonfinite: true`."""
    d = asdict(ev)
    if isinstance(ev, Warning_) and ev.code is None:
        del d["code"]  # most warnings have no code: keep their wire form as it was
    if isinstance(ev, Phase) and ev.profile is None:
        del d["profile"]  # likewise: only the rendering phase names the profile
    if isinstance(ev, Progress) and isinstance(ev.loss, float) and not math.isfinite(ev.loss):
        d["loss_nonfinite"] = True
    for k, v in d.items():
        if isinstance(v, float):
            d[k] = finite_or_none(v)
    d["type"] = ev.type
    return d


def event_from_dict(d: dict[str, Any]) -> Event | None:
    """Inverse of event_to_dict; ignores identity keys (job_id, seq, ts) and unknown extras."""
    cls = EVENT_TYPES.get(d.get("type", ""))
    if cls is None:
        return None
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError:
        return None


class EventStream:
    """Stamps events and fans them out: events.jsonl (flushed per line) and any number of sinks."""

    def __init__(self, job_id: str, path: Path | None = None, *, start_seq: int = 0, clock=time.time) -> None:
        self.job_id = job_id
        self.seq = start_seq
        self.clock = clock
        self.sinks: list[Any] = []
        self._fh: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if start_seq == 0 and path.exists():
                self.seq = last_seq(path)
            self._fh = open(path, "a", encoding="utf-8")

    def add_sink(self, sink) -> None:
        """`sink(event_dict)` is called for every event after it is written."""
        self.sinks.append(sink)

    def emit(self, ev: Event) -> dict[str, Any]:
        self.seq += 1
        d = {"job_id": self.job_id, "seq": self.seq, "ts": round(self.clock(), 3), **event_to_dict(ev)}
        if self._fh is not None:
            self._fh.write(json.dumps(d, ensure_ascii=False, allow_nan=False) + "\n")
            self._fh.flush()
        for sink in self.sinks:
            sink(d)
        return d

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_events(path: Path, after_seq: int = 0) -> list[dict[str, Any]]:
    """Events from an events.jsonl with seq > after_seq; a torn last line is skipped."""
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if ("NaN" in line or "Infinity" in line) and isinstance(d, dict):
                    d = _strict(d)  # written by an older zlt: keep what is served (SSE, --json) strict JSON
                if d.get("seq", 0) > after_seq:
                    out.append(d)
    except FileNotFoundError:
        pass
    return out


def _strict(d: dict[str, Any]) -> dict[str, Any]:
    if d.get("type") == "progress" and isinstance(d.get("loss"), float) and not math.isfinite(d["loss"]):
        d["loss_nonfinite"] = True
    return {k: finite_or_none(v) for k, v in d.items()}


def last_seq(path: Path) -> int:
    evs = read_events(path)
    return max((e.get("seq", 0) for e in evs), default=0)
