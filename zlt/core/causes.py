"""The one vocabulary of why a job ended, and what each cause means for a retry.

Every door that records a job's end (the training runner, in-process generation and evaluation jobs, the
worker, the reaper) names its cause from `Cause`, and asks this module whether the cause is an input error,
an infrastructure fault or a trainer failure:

- an **input error** (bad config, model, adapter, dataset, a preflight refusal) fails the same way however
  often it runs: never retried automatically (`zlt retry` still runs it again on request);
- an **infrastructure fault** (a lost worker, lease or host) is not the job's fault: requeued to resume
  without using the spec's retry budget;
- a **trainer failure** (CUDA or host OOM, divergence, a crash) uses the retry budget;
- `timeout`, `cancelled` and `import_error` are not retried automatically either: a timeout would time out
  again, a cancel was asked for, a missing package stays missing.
"""

from __future__ import annotations

from enum import Enum

from zlt.core.errors import BadInputError, EnvNotReadyError


class Cause(str, Enum):
    CUDA_OOM = "cuda_oom"
    HOST_OOM = "host_oom"
    MODEL_DOWNLOAD = "model_download"
    MODEL_MISSING = "model_missing"
    BAD_INPUT = "bad_input"
    BAD_MODEL = "bad_model"
    BAD_ADAPTER = "bad_adapter"
    IMPORT_ERROR = "import_error"
    BAD_CONFIG = "bad_config"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    ABANDONED = "abandoned"
    PREFLIGHT = "preflight"
    DATASET = "dataset"
    NOT_VISIBLE = "not_visible"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


FAILURE_CAUSES: tuple[str, ...] = tuple(c.value for c in Cause)

INPUT_ERRORS = frozenset({Cause.BAD_INPUT, Cause.BAD_MODEL, Cause.BAD_ADAPTER, Cause.MODEL_MISSING, Cause.BAD_CONFIG, Cause.DATASET, Cause.PREFLIGHT,
                          Cause.NOT_VISIBLE})
INFRA_FAULTS = frozenset({Cause.ABANDONED})
NOT_RETRIED = frozenset({Cause.IMPORT_ERROR, Cause.TIMEOUT, Cause.CANCELLED})
TRAINER_FAILURES = frozenset(Cause) - INPUT_ERRORS - INFRA_FAULTS - NOT_RETRIED

INPUT_ERROR_CAUSES = frozenset(c.value for c in INPUT_ERRORS)
NOT_RETRIED_CAUSES = frozenset(c.value for c in NOT_RETRIED)


def is_input_error(cause: str | None) -> bool:
    """True for failures that depend only on the input (spec, files, dataset): running it again fails again."""
    return cause in INPUT_ERROR_CAUSES


def retryable(cause: str | None) -> bool:
    """May a trainer failure with this cause be retried automatically (budget permitting)?"""
    return not is_input_error(cause) and cause not in NOT_RETRIED_CAUSES


def cause_of(err: BaseException, stage: str | None = None) -> Cause:
    """The cause of an error raised before (or instead of) a trainer run: one answer for every kind of job.

    `stage` is the phase the error was raised in: a bad input while preparing the dataset is the dataset's."""
    if isinstance(err, EnvNotReadyError):
        return Cause.PREFLIGHT
    if stage == "preparing_dataset":
        return Cause.DATASET
    errors = getattr(err, "errors", None)  # a SpecError: every problem in the dataset section is the dataset's
    if errors and all(getattr(e, "path", "").startswith("dataset") for e in errors):
        return Cause.DATASET
    if isinstance(err, BadInputError):
        return Cause.BAD_CONFIG
    return Cause.UNKNOWN
