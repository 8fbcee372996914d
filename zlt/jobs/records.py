"""What goes into and comes out of the job store: a new job, a claim, a heartbeat's answer, a lost lease."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zlt.core.errors import ZltError
from zlt.core.kinds import JobKind


class LeaseLost(ZltError):
    """The runner's lease token no longer matches: the job was reaped or re-claimed meanwhile."""

    kind = "lease_lost"


@dataclass
class NewJob:
    """What `submit` hands the store; the spec and options are already validated and serialised.

    A training job has a `backend` and a `spec_json`; a generation or evaluation job (`kind`) has neither, its
    checked request goes to `request` (the `request_json` column)."""

    job_id: str
    name: str
    priority: int
    backend: str | None
    profile: str
    spec_json: str | None
    job_dir: str
    gpus_needed: int
    max_retries: int
    options: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)
    min_vram_gb: float | None = None
    kind: JobKind = JobKind.TRAIN
    request: dict[str, Any] | None = None


@dataclass
class Claim:
    """A job a worker took: run it on `gpus` and prove ownership with `token`."""

    job_id: str
    token: str
    gpus: list[int]
    attempt: int
    resume: bool


@dataclass
class Beat:
    """What a heartbeat learned: whether the lease is still ours and whether a cancel was asked for."""

    alive: bool
    cancel_requested: bool


def parse_gpus(text: str | None) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []
