"""What an evaluation may be asked for (the HTTP/MCP body, the CLI's flags, an evaluation job's frozen request),
and every refusal it can meet before it draws anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zlt.core.errors import FieldError, SpecError
from zlt.eval.evaluate import check_grid, draw_settings
from zlt.eval.options import options_for
from zlt.eval.plan import open_artifact, select_targets, training_image_dir
from zlt.eval.prompts import build_prompts
from zlt.preflight.clip_model import require_clip


class EvalRequest(BaseModel):
    """What an agent may set; everything left out comes from the artifact's `eval:` spec section."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[str] | None = Field(None, max_length=64, description="Held-out prompts ('[trigger]' marks the "
                                      "trigger); default: the spec's eval.prompts, else 8 varied subjects.")
    seeds: int | None = Field(None, ge=1, le=16, description="Images per prompt (default 2).")
    checkpoints: str | None = Field(None, pattern=r"^(all|last|\d+(,\d+)*)$",
                                    description="all, last, or steps like '250,500' (default all).")
    clip: str | None = Field(None, max_length=1000, description="CLIP model: a local transformers folder with "
                             ".safetensors weights (on a server, inside its model roots) or a hub id already "
                             "downloaded, or zlt/tiny-clip (built in, random: smoke tests); default: the spec's eval.models.clip.")
    scale: float | None = Field(None, ge=0.0, le=4.0, description="LoRA scale (default 1.0).")
    steps: int | None = Field(None, ge=1, le=200, description="Denoising steps (default: the spec's sampling steps).")
    guidance: float | None = Field(None, ge=0.0, le=30.0, description="Guidance scale (default: the spec's).")
    size: int | None = Field(None, ge=16, le=2048, description="Square image side, a multiple of 16.")
    targets: bool | None = Field(None, description="Add the report's `targets` block (CLIP style > 0.85); off by default.")


def parse_eval_request(data: Any) -> EvalRequest:
    """An HTTP/MCP body (None: all defaults) -> EvalRequest; every bad field at once, named `evaluate.<field>`."""
    if data is None:
        data = {}
    try:
        return EvalRequest.model_validate(data)
    except ValidationError as e:
        errs = [FieldError("evaluate." + ".".join(str(p) for p in x["loc"]) if x["loc"] else "evaluate", x["msg"])
                for x in e.errors()]
        raise SpecError(errs, "evaluate request") from None


def check_request(home: Path, artifact_id: str, request: EvalRequest) -> Any:
    """Every refusal an evaluation can meet before it draws anything. Returns the EvalOptions."""
    opts = options_for(home, artifact_id, **request.model_dump())
    view = open_artifact(home, artifact_id)
    select_targets(view, opts.checkpoints)
    check_grid(len(build_prompts(opts.prompts, view.trigger, field="evaluate.prompts")), opts.seeds)
    draw_settings(view, opts)
    training_image_dir(view, opts.train_images)
    require_clip(opts.clip)
    return opts
