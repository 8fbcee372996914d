"""MCP tools for using a trained LoRA: `generate`, `style_transfer` (both queue a job) and `get_generation`.

The arguments are the library's own request models (`zlt.infer.params`), so the tool schemas, the HTTP bodies and
the CLI flags cannot drift apart. The request gate (zlt/flows/request_gate.py) fences every path: input images to
the server's data roots, a ControlNet to its model roots, when the session has a fence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from zlt.infer.params import GenerateParams, TransferParams
from zlt.serve.generations import generation, submit
from zlt.serve.intake import Fence
from zlt.serve.mcp_tool import Tool, ToolArgs


class GenerateArgs(GenerateParams):
    priority: int = Field(0, ge=-100, le=100, description="Queue priority, higher first.")


class TransferArgs(TransferParams):
    priority: int = Field(0, ge=-100, le=100, description="Queue priority, higher first.")


def _request(args: Any) -> dict[str, Any]:
    return args.model_dump(mode="json", exclude={"priority"})


class GenerationJobArgs(ToolArgs):
    job_id: str = Field(min_length=1, max_length=128, description="Job id (or a unique prefix) from generate or "
                        "style_transfer.")


PICK = ("Each loras[] item: artifact (id from get_artifact/list_artifacts; ID@STEP picks a checkpoint) and "
        "checkpoint: a step or 'best' (the step the last evaluate picked, drawn at the scale it scored at unless "
        "scale is given).")


def generation_tools(home: Path, fence: Fence) -> list[Any]:
    home = Path(home)
    roots = fence.roots()  # the request gate fences image paths (data roots) and a ControlNet (model roots)
    where = ("files inside the server's data roots" if fence.data_roots is not None else "files on this machine")
    return [
        Tool("generate", f"Text to image with trained LoRA(s). {PICK} Queues a job and returns its job_id at once; "
             "when get_job_status says succeeded, get_generation lists the PNGs (parameters embedded) and the "
             "contact sheet.", GenerateArgs,
             lambda a: submit(home, "generate", _request(a), a.priority, roots)),
        Tool("style_transfer", f"Restyle the user's images with trained LoRA(s) (img2img; `strength` 0..1), keeping "
             f"each image's aspect (sides snapped down to a multiple of 16); `images` are {where}. {PICK} Queues a "
             "job; returns its job_id at once (then get_generation).", TransferArgs,
             lambda a: submit(home, "transfer", _request(a), a.priority, roots)),
        Tool("get_generation", "A generate/style_transfer job: its status and, once succeeded, its outputs "
             "(folder, PNG files with their prompt, seed and scale, contact sheet).", GenerationJobArgs,
             lambda a: generation(home, a.job_id)),
    ]
