"""One error hierarchy; only the CLI layer turns these into exit codes.

Exit codes are part of the agent contract: 0 ok, 1 job failed, 2 bad input, 3 environment not ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENV_NOT_READY = 3


@dataclass
class FieldError:
    """A problem with one field of a spec: `path: message (hint)`."""

    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "hint": self.hint}


class ZltError(Exception):
    """Base of every error zlt reports to a user. `hint` says what to do next."""

    exit_code = EXIT_BAD_INPUT
    kind = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        out = [self.message]
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out

    def to_dict(self) -> dict:
        return {"error": self.kind, "message": self.message, "hint": self.hint, "exit_code": self.exit_code}


class BadInputError(ZltError):
    """The user handed over something wrong: a file, a flag, a value."""

    exit_code = EXIT_BAD_INPUT
    kind = "bad_input"


@dataclass
class _Errors:
    items: list[FieldError] = field(default_factory=list)


class SpecError(BadInputError):
    """A spec failed validation; carries every field error at once."""

    kind = "invalid_spec"

    def __init__(self, errors: list[FieldError], source: str = "") -> None:
        self.errors = errors
        self.source = source
        where = f" in {source}" if source else ""
        n = len(errors)
        super().__init__(f"{n} problem{'s' if n != 1 else ''}{where}")

    def lines(self) -> list[str]:
        return [self.message + ":"] + [f"  {e}" for e in self.errors]

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["errors"] = [e.to_dict() for e in self.errors]
        d["source"] = self.source
        return d


class EnvNotReadyError(ZltError):
    """The machine cannot run the job yet: no GPU, trainer missing, disk full."""

    exit_code = EXIT_ENV_NOT_READY
    kind = "env_not_ready"


class JobFailedError(ZltError):
    """A job ran and failed (trainer crash, OOM, timeout, cancel)."""

    exit_code = EXIT_JOB_FAILED
    kind = "job_failed"


class NotFoundError(BadInputError):
    """A job, artifact or file named by the user does not exist."""

    kind = "not_found"
