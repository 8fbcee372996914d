"""Response shapes of the HTTP API, for the OpenAPI document (the bodies themselves come from library functions)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Dotted spec field the problem is in ('' for the whole body).")
    message: str = Field(description="What is wrong.")
    hint: str = Field("", description="What to do about it.")


class ErrorBody(BaseModel):
    """Every error response: a kind, a message, what to do next, and for 422 every field problem."""

    model_config = ConfigDict(extra="forbid")

    ok: bool = Field(False, description="Always false.")
    error: str = Field(description="Error kind: invalid_spec, bad_input, not_found, unauthorized, upload_refused, ...")
    message: str = Field(description="What went wrong.")
    hint: str = Field("", description="What to do next.")
    detail: list[str] = Field(default_factory=list, description="Every problem as 'field.path: message'.")
    errors: list[ErrorItem] = Field(default_factory=list, description="Every problem as an object.")


class Accepted(BaseModel):
    """A queued job: poll `status_url`, or follow `events_url` (Server-Sent Events)."""

    model_config = ConfigDict(extra="allow")

    job_id: str = Field(description="The job's id.")
    state: str = Field(description="The job's state (queued right after submit).")
    status_url: str = Field(description="GET this for the job's status object.")
    events_url: str = Field(description="GET this for the job's event stream (text/event-stream).")
    warnings: list[str] = Field(default_factory=list, description="Notes about the spec that did not stop it.")


class JobStatusBody(BaseModel):
    """The status object `zlt status --json` prints."""

    model_config = ConfigDict(extra="allow")

    job_id: str = Field(description="The job's id.")
    name: str = Field(description="The spec's name.")
    state: str = Field(description="queued, preparing, running, succeeded, failed or cancelled.")
    phase: str | None = Field(None, description="What the job is doing now (preflight, training, saving, ...).")
    step: int | None = Field(None, description="Last reported training step.")
    total: int | None = Field(None, description="Total training steps.")
    percent: float | None = Field(None, description="step / total, in percent.")
    artifact_id: str | None = Field(None, description="The artifact of a succeeded job.")
    error_cause: str | None = Field(None, description="Why the job failed (cuda_oom, dataset, ...).")
    error_message: str | None = Field(None, description="The failure in words.")


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool = Field(description="The server answers.")
    version: str = Field(description="zlt version.")


JSONObject = dict[str, Any]
