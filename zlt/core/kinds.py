"""Kinds of job: what a row of the job table asks a worker to do. `zlt.flows.kinds` maps each to its runner."""

from __future__ import annotations

from enum import Enum


class JobKind(str, Enum):
    TRAIN = "train"
    GENERATE = "generate"
    EVALUATE = "evaluate"
    CAPTION = "caption"

    def __str__(self) -> str:
        return self.value


KIND_NAMES: tuple[str, ...] = tuple(k.value for k in JobKind)
