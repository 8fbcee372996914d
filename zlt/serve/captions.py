"""`POST /v1/datasets/caption`: queue a caption job for a folder inside the server's data roots (202, like
`POST /v1/jobs`); follow it at `GET /v1/jobs/{id}` and `.../events`. The body is zlt.caption.request.CaptionRequest;
zlt.flows.captioning.submit_caption runs the request gate with this server's roots (the dataset fence on `path`,
the model fence on `model`), so a folder outside the data roots, a missing folder or `mode: all` without
`overwrite` is a 422 and a captioner that is not downloaded a 503, before any job exists."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from zlt.caption.request import CaptionRequest
from zlt.flows.captioning import submit_caption
from zlt.flows.fences import Roots


def submit(home: Path, data: Any, roots: Roots, priority: int = 0) -> dict[str, Any]:
    return submit_caption(home, data if isinstance(data, dict) else {"path": data}, priority=priority, roots=roots)


def routes(api: APIRouter, cfg: Any, json_body: Any, errors: Any) -> None:
    """Add the caption route to the authenticated router (`cfg` is the server's ServeConfig)."""
    body = {"requestBody": {"required": True, "description": "What to caption and how (docs/dataset.md).",
                            "content": {"application/json": {"schema": CaptionRequest.model_json_schema()}}}}

    @api.post("/v1/datasets/caption", status_code=202, tags=["datasets"], responses=errors(400, 415, 422, 503),
              openapi_extra=body)
    async def caption_dataset(request: Request) -> JSONResponse:
        """Queue auto-captioning of a dataset folder: a `.txt` per image (mode missing: those without one), a record
        per caption in the folder's captions.jsonl. 202 with the job id."""
        data = await json_body(request)
        st = await run_in_threadpool(submit, cfg.home, data, cfg.fence().roots())
        url = str(request.url_for("get_job", job_id=st["job_id"]))
        out = {"job_id": st["job_id"], "state": st["state"], "kind": st["kind"], "status_url": url,
               "events_url": str(request.url_for("job_events_stream", job_id=st["job_id"])),
               "images": st["images"], "to_caption": st["to_caption"], "job": st}
        return JSONResponse(out, status_code=202, headers={"Location": url})
