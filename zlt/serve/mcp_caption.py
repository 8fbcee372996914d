"""MCP tool `caption_dataset`: queue auto-captioning of a dataset folder; returns the job (poll get_job_status,
get_job_events). Its arguments are the library's own CaptionRequest, so the tool, `POST /v1/datasets/caption` and
`zlt dataset caption` cannot drift apart; the request gate fences `path` to the session's data roots."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from zlt.caption.request import CaptionRequest
from zlt.flows.captioning import submit_caption
from zlt.serve.intake import Fence
from zlt.serve.mcp_tool import Tool


class CaptionArgs(CaptionRequest):
    priority: int = Field(0, ge=-100, le=100, description="Queue priority.")


def caption_tool(home: Path, fence: Fence) -> Tool:
    home, roots = Path(home), fence.roots()
    return Tool("caption_dataset", "Caption bare images (a NAME.txt each). Queues a job, returns job_id (poll "
                "get_job_status); then submit_lora_job on that folder.", CaptionArgs,
                lambda a: submit_caption(home, a.model_dump(exclude={"priority"}), priority=a.priority, roots=roots))
