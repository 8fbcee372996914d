"""What an MCP tool is: its name, description, arguments model and the function it calls.

Apart from zlt/serve/mcp_server.py so the modules that contribute tools (mcp_generations, evaluations) can build
them without importing the server that lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ToolArgs(BaseModel):
    """Every tool's arguments: unknown keys are refused, so a misspelt argument is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class JobArgs(ToolArgs):
    job_id: str = Field(min_length=1, max_length=128, description="Job id (or a unique prefix) as a tool that queued "
                        "it returned it.")


@dataclass
class Tool:
    name: str
    summary: str
    args: type[ToolArgs]
    run: Callable[[Any], Any]

    def description(self) -> str:
        return self.summary
