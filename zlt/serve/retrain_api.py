"""`POST /v1/artifacts/{ref}/retrain` and the MCP tool `retrain_lora`: `zlt retrain` for remote callers.

The body is checked strictly (unknown keys are refused). The spec the retrain will run (the parent's, with `dataset`,
`set` in any syntax and `backend` applied) passes the gate with the server's roots (zlt/flows/gate.py): a path an
override changes must lie inside the roots, whatever its spelling (`output.registry={path: ...}` included).
`backend` is any string (its schema lists the registry's names): an unknown one gets the gate's 422 naming
`training.backend`, as `zlt retrain --backend` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zlt.core.errors import BadInputError, FieldError, SpecError
from zlt.flows.retrain import submit_retrain
from zlt.jobs.api import open_store
from zlt.serve.intake import Fence, backend_doc, backend_enum
from zlt.serve.webhooks import Subscriptions


class RetrainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int | None = Field(None, ge=1, description="Train N new steps from the artifact's weights (fresh optimizer).")
    more_steps: int | None = Field(None, ge=1, description="Continue for N more steps (default: as many as before).")
    dataset: str | None = Field(None, description="Train on this image folder instead of the parent's.")
    set: list[str] = Field(default_factory=list, description="Spec overrides, e.g. 'training.learning_rate=5e-5'.")
    backend: str | None = Field(None, description=backend_doc("the parent's"), json_schema_extra=backend_enum)
    profile: str = Field("auto", description="Hardware profile, or auto.")
    priority: int | None = Field(None, ge=-100, le=100, description="Queue priority (default: job.priority).")
    skip_preflight: bool = Field(False, description="Skip the GPU/trainer checks before the run.")


def body_openapi() -> dict[str, Any]:
    """The request body in the OpenAPI document (the route reads raw JSON so that errors have zlt's shape)."""
    schema = RetrainBody.model_json_schema()
    schema.pop("title", None)
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


def parse_body(data: Any, source: str = "<http>") -> RetrainBody:
    if data is None:
        data = {}
    try:
        return RetrainBody.model_validate(data)
    except ValidationError as e:
        raise SpecError([FieldError(".".join(str(x) for x in err["loc"]) or "body", err["msg"])
                         for err in e.errors()], source) from None


def retrain(home: Path, ref: str, body: RetrainBody, fence: Fence) -> dict[str, Any]:
    """Queue the retrain; returns the job status with its `retrain` block."""
    result = submit_retrain(home, ref, steps=body.steps, more_steps=body.more_steps, dataset=body.dataset,
                            sets=body.set, backend=body.backend, profile=body.profile, priority=body.priority,
                            skip_preflight=body.skip_preflight, roots=fence.roots())
    url = result.get("callback_url") or _callback_url(home, result["job_id"])
    if url:  # the parent's job.callback_url came along with its spec: deliver this job's events there too
        try:
            Subscriptions(home).subscribe(result["job_id"], fence.callback_allow.check(url))
        except BadInputError as e:
            result.setdefault("warnings", []).append(f"{e.message}; no webhooks for this job")
    return result


def _callback_url(home: Path, job_id: str) -> str | None:
    """The `job.callback_url` of the spec the job was queued with (the parent's, overrides applied)."""
    with open_store(home) as store:
        spec_json = store.get(job_id)["spec_json"]
    try:
        return (json.loads(spec_json or "{}").get("job") or {}).get("callback_url")
    except (ValueError, AttributeError):
        return None
