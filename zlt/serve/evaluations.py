"""HTTP routes and MCP tools for evaluation: `POST /v1/artifacts/{id}/evaluate` (queues a job, 202) and
`GET /v1/artifacts/{id}/eval` (the last report); MCP `evaluate` and `get_eval_report`.

Pictures are files of the artifact: `GET /v1/artifacts/{id}/files/eval/contact_sheet.png` (and curves.png).
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from zlt.artifacts import artifact_file
from zlt.artifacts.resolve import resolve_id
from zlt.core.errors import NotFoundError
from zlt.eval.request import EvalRequest
from zlt.flows.evaluation import submit_evaluation
from zlt.flows.fences import Roots
from zlt.flows.request_gate import LOCAL
from zlt.serve.intake import Fence
from zlt.serve.mcp_tool import Tool, ToolArgs

ARTIFACT_ID = PathParam(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,255}$",
                        description="Artifact id, unique id prefix, job id, style name (its current version), "
                                    "STYLE@vN or 'latest' (zlt.artifacts.resolve).")


def submit(home: Path, artifact_id: str, data: Any, priority: int = 0, roots: Roots = LOCAL) -> dict[str, Any]:
    """Queue an evaluation; the request gate (zlt/flows/request_gate.py) fences `clip` to the server's model roots."""
    return submit_evaluation(home, artifact_id, data, priority=priority, roots=roots)


def report(home: Path, artifact_id: str) -> dict[str, Any]:
    """The artifact's last evaluation report (eval/report.json). NotFoundError when it has none."""
    artifact_id = resolve_id(home, artifact_id)  # an unknown artifact says so, not "not evaluated"
    try:
        path = artifact_file(home, artifact_id, "eval/report.json")
    except NotFoundError:
        raise NotFoundError(f"artifact '{artifact_id}' has not been evaluated",
                            hint="queue one: POST /v1/artifacts/{id}/evaluate (MCP: evaluate; CLI: zlt eval ID)") from None
    return json.loads(path.read_text(encoding="utf-8"))


def routes(api: APIRouter, cfg: Any, json_body: Any, errors: Any) -> None:
    """Add the evaluation routes to the authenticated router (`cfg` is the server's ServeConfig)."""
    schema = EvalRequest.model_json_schema()
    body = {"requestBody": {"required": False, "description": "Evaluation settings; all optional (the artifact's "
                            "eval: spec section fills the rest).", "content": {"application/json": {"schema": schema}}}}

    @api.post("/v1/artifacts/{artifact_id}/evaluate", status_code=202, tags=["artifacts"],
              responses=errors(400, 404, 422, 503), openapi_extra=body)
    async def evaluate(request: Request, artifact_id: str = ARTIFACT_ID) -> JSONResponse:
        """Queue an evaluation: every kept checkpoint and the base model draw held-out prompts, CLIP scores them,
        the best checkpoint is picked (docs/eval.md). 202 with the job id; the report follows at GET .../eval."""
        raw = await request.body()
        data = await json_body(request) if raw.strip() else {}
        st = await run_in_threadpool(submit, cfg.home, artifact_id, data, 0, cfg.fence().roots())
        url = str(request.url_for("get_job", job_id=st["job_id"]))
        out = {"job_id": st["job_id"], "state": st["state"], "kind": st["kind"], "status_url": url,
               "report_url": str(request.url_for("get_eval_report", artifact_id=artifact_id)),
               "events_url": str(request.url_for("job_events_stream", job_id=st["job_id"])), "job": st}
        return JSONResponse(out, status_code=202, headers={"Location": url})

    @api.get("/v1/artifacts/{artifact_id}/eval", name="get_eval_report", tags=["artifacts"],
             responses=errors(404, 422))
    def get_eval_report(artifact_id: str = ARTIFACT_ID) -> dict[str, Any]:
        """The artifact's last evaluation report: every metric per checkpoint, the best step and why."""
        return report(cfg.home, artifact_id)


def eval_tools(home: Path, fence: Fence) -> list[Any]:
    """MCP tools (added to zlt mcp's list); `fence` is the session's (a local one fences nothing)."""
    class EvaluateArgs(EvalRequest):
        artifact_id: str = Field(min_length=1, max_length=256, description="Artifact id (from list_artifacts), id prefix, "
                                 "job id, style name, STYLE@vN or 'latest'.")
        priority: int = Field(0, ge=-100, le=100, description="Queue priority, higher first.")

    class ReportArgs(ToolArgs):
        artifact_id: str = Field(min_length=1, max_length=256, description="Artifact id (from list_artifacts), id prefix, "
                                 "job id, style name, STYLE@vN or 'latest'.")

    home = Path(home)
    roots = fence.roots()
    return [
        Tool("evaluate", "Score every checkpoint of a trained LoRA (and the base model) on held-out prompts with "
             "CLIP: style similarity to the training images, prompt alignment, memorisation, diversity; picks the "
             "best checkpoint. Queues a job and returns its job_id at once; when get_job_status says succeeded, "
             "get_eval_report has the numbers, each with its spread, and best.caveat when the pick is not "
             "distinguishable from the base or the runner-up.", EvaluateArgs,
             lambda a: submit(home, a.artifact_id, a.model_dump(exclude={"artifact_id", "priority"}), a.priority,
                              roots)),
        Tool("get_eval_report", "The last evaluation of an artifact: metrics per checkpoint, the best step and the "
             "reason; the contact sheet is the artifact file eval/contact_sheet.png.", ReportArgs,
             lambda a: report(home, a.artifact_id)),
    ]
