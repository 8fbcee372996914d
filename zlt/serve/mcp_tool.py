"""What an MCP tool is: its name, description, arguments model and the function it calls.

Apart from zlt/serve/mcp_server.py so the modules that contribute tools (mcp_generations, evaluations) can build
them without importing the server that lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from zlt.spec.models import JobSpec


class ToolArgs(BaseModel):
    """Every tool's arguments: unknown keys are refused, so a misspelt argument is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class JobArgs(ToolArgs):
    job_id: str = Field(min_length=1, max_length=128, description="Job id (or a unique prefix) from submit_lora_job.")


def spec_sections() -> str:
    """'model: Base model and LoRA. dataset: ...' from the JobSpec field descriptions."""
    return " ".join(f"{name}: {f.description}" for name, f in JobSpec.model_fields.items())


@dataclass
class Tool:
    name: str
    summary: str
    args: type[ToolArgs]
    run: Callable[[Any], Any]
    with_spec: bool = False

    def description(self) -> str:
        if not self.with_spec:
            return self.summary
        return (f"{self.summary} Spec sections — {spec_sections()} The preset ('style' or 'character') fills in "
                "whatever the spec leaves out; each field's schema default is the 'style' value and "
                "x-preset-defaults lists both.")
