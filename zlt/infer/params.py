"""What a generation or a style transfer asks for: strict pydantic models, the same for the CLI, HTTP, MCP and jobs.

Every problem is reported as `generate.<field>: message` / `transfer.<field>: message`, so the HTTP layer names the
field (422) and the CLI exits 2. LoRA scale: the scale the evaluation picked the checkpoint at for `ID@best`, else
DEFAULT_SCALE (1.0, the scale `zlt eval` scores at); steps and guidance default to the first artifact's own sampling
settings (zlt.infer.resolve.sampling_defaults: turbo 9/0, deturbo 25/2, base 30/4); the size to its training
resolution (within what its base model draws: zlt.infer.images.drawable_side).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from zlt.core.errors import BadInputError, FieldError, SpecError

MAX_SIDE = 4096  # generated images; inputs are capped separately (zlt.infer.images)
MAX_IMAGES = 64  # images one request may make (prompts x count, or inputs x count), and inputs it may hold
DEFAULT_SCALE = 1.0  # one default: generate, transfer and eval (eval.scale) all apply a LoRA at 1.0
MAX_PROMPT_CHARS = 2000  # any model; the tiny test model reads fewer (zlt.infer.prompts)
SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX\*]\s*(\d+)\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_image_count(count: int, info: ValidationInfo, per_field: str, what: str) -> int:
    """MAX_IMAGES caps the images one request makes: prompts (or inputs) x count, not each on its own. A `count`
    validator: the list field comes first in the model, so it is validated (and in `info.data`) by then."""
    per = len(info.data.get(per_field) or [])
    if per * count > MAX_IMAGES:
        raise ValueError(f"{per} {what} x count {count} = {per * count} images; a request may make at most {MAX_IMAGES}")
    return count


class LoraUse(_Strict):
    """One LoRA applied with its own scale (several may be stacked)."""

    artifact: str = Field(min_length=1, max_length=256, description="Artifact reference: id, unique id prefix, job id, style name (its current version), STYLE@vN or 'latest'; ID@STEP / ID@best picks a checkpoint.")
    scale: float | None = Field(None, ge=-4.0, le=4.0, description="LoRA scale (0 = base model); default 1.0, or for "
                                "ID@best the scale its evaluation used.")
    checkpoint: int | Literal["best"] | None = Field(
        None, description="A kept checkpoint's step, or 'best': the step the artifact's last evaluation picked "
        "(zlt.artifacts.resolve); default: the final weights.")

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _step_or_best(cls, v: Any) -> Any:
        if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v
        text = str(v).strip().lower()
        if text == "best" or text.isdigit():
            return text if text == "best" else int(text)
        raise ValueError(f"{v!r} is not a step number (0 or more) or 'best'")


class _Common(_Strict):
    loras: list[LoraUse] = Field(min_length=1, max_length=8, description="LoRAs to apply; the first one's artifact stores the outputs.")
    seed: int = Field(0, ge=0, lt=2**63, description="Seed of the first image; image i uses seed + i.")
    steps: int | None = Field(None, ge=1, le=200, description="Denoising steps; default: the first artifact's "
                              "sampling steps (its spec's training.sample.steps, else its variant's: turbo 9, "
                              "deturbo 25, base 30).")
    guidance: float | None = Field(None, ge=0.0, le=30.0, description="Classifier-free guidance scale; default: the "
                                   "first artifact's (its spec's, else turbo 0, deturbo 2, base 4).")
    trigger: bool = Field(True, description="Put the first artifact's trigger token in front of every prompt that lacks it.")
    negative_prompt: str | None = Field(None, max_length=2000, description="Negative prompt (only used when guidance > 0).")
    vram_gb: float | None = Field(None, gt=0, description="Plan for a GPU with this much memory; below 24 GB the "
                                  "pipeline uses model CPU offload (default: detected).")


class GenerateParams(_Common):
    """Text to image with the LoRA(s) applied (`zlt generate`)."""

    prompts: list[str] = Field(min_length=1, max_length=MAX_IMAGES, description="Prompts; each makes `count` images.")
    count: int = Field(1, ge=1, le=MAX_IMAGES, description="Images per prompt.")
    width: int | None = Field(None, ge=16, le=MAX_SIDE, description="Width in pixels, a multiple of 16 (default: the "
                              "artifact's training resolution).")
    height: int | None = Field(None, ge=16, le=MAX_SIDE, description="Height in pixels, a multiple of 16 (default: "
                               "the artifact's training resolution).")

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.strip():
                raise ValueError("a prompt is empty")
            if len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"a prompt is longer than {MAX_PROMPT_CHARS} characters")
        return v

    @field_validator("count")
    @classmethod
    def _total(cls, v: int, info: ValidationInfo) -> int:
        return check_image_count(v, info, "prompts", "prompt(s)")

    @field_validator("width", "height")
    @classmethod
    def _mult16(cls, v: int | None) -> int | None:
        if v is not None and v % 16:
            raise ValueError(f"{v} is not a multiple of 16 (try {max(16, round(v / 16) * 16)})")
        return v


class TransferParams(_Common):
    """Style transfer of the user's images (`zlt transfer`): img2img, or a ControlNet with `control`."""

    images: list[str] = Field(min_length=1, max_length=MAX_IMAGES, description="Input image files (PNG, JPEG, WebP); "
                              "on a server, inside its data roots.")
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Prompt for every image (the trigger token is added).")
    count: int = Field(1, ge=1, le=MAX_IMAGES, description="Outputs per input image.")
    strength: float = Field(0.6, ge=0.0, le=1.0, description="How far from the input: 0 returns it, 1 ignores it.")
    max_side: int | None = Field(None, ge=16, le=MAX_SIDE, description="Inputs with a longer side are scaled down to "
                                 "it (aspect kept); default 2048, or less where the base model draws less. Each "
                                 "side is then snapped down to a multiple of 16.")
    control: Literal["canny", "depth"] | None = Field(None, description="Use ZImageControlNetPipeline with this "
                                                      "control type (needs `controlnet`).")
    controlnet: str | None = Field(None, max_length=1000, description="Z-Image ControlNet: a local folder or "
                                   ".safetensors file (on a server, inside its model roots), or a hub id already in "
                                   "the Hugging Face cache (never downloaded here). Pickle weights are refused.")
    control_images: list[str] | None = Field(None, max_length=MAX_IMAGES, description="Control maps, one per input (required for depth; "
                                             "for canny, edges are computed from the input when absent).")
    control_scale: float = Field(0.75, ge=0.0, le=2.0, description="controlnet_conditioning_scale.")

    @field_validator("count")
    @classmethod
    def _total(cls, v: int, info: ValidationInfo) -> int:
        return check_image_count(v, info, "images", "input image(s)")


def _field_errors(err: ValidationError, prefix: str) -> list[FieldError]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not isinstance(p, int)) or "request"
        msg = e["msg"].removeprefix("Value error, ")
        out.append(FieldError(f"{prefix}.{loc}", msg))
    return out


def validate(model: type[_Common], data: dict[str, Any], prefix: str) -> Any:
    """Build the params or raise one error naming every bad field (`generate.steps: ...`)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = _field_errors(e, prefix)
        if len(errors) == 1:
            raise BadInputError(str(errors[0])) from None
        raise SpecError(errors, source=f"{prefix} request") from None


KINDS = ("generate", "transfer")  # the two requests a generation job may hold


def parse_request(kind: str, data: dict[str, Any]) -> GenerateParams | TransferParams:
    """A request dict (a job's frozen request, an HTTP or MCP body) -> its params; errors named `kind.field`."""
    if kind not in KINDS:
        raise BadInputError(f"kind {kind!r}: not a generation kind", hint=f"use one of: {', '.join(KINDS)}")
    return validate(GenerateParams if kind == "generate" else TransferParams, data, kind)


def parse_size(text: str) -> tuple[int, int]:
    """'1024x768' -> (1024, 768) as (width, height)."""
    m = SIZE_RE.match(text or "")
    if not m:
        raise BadInputError(f"generate.size: {text!r} is not WIDTHxHEIGHT", hint="e.g. --size 1024x1024")
    return int(m.group(1)), int(m.group(2))


def parse_lora(text: str, default_scale: float | None = None) -> dict[str, Any]:
    """'ID', 'ID:0.8' or 'ID@500:0.8' (checkpoint step 500; any artifact reference) -> a LoraUse dict."""
    ref, scale = text, default_scale
    if ":" in text:
        ref, _, tail = text.rpartition(":")
        try:
            scale = float(tail)
        except ValueError:
            raise BadInputError(f"generate.loras: {text!r}: scale {tail!r} is not a number",
                                hint="write --lora ID:0.8") from None
    if not ref.strip() or ref.strip().startswith("@"):
        raise BadInputError(f"generate.loras: {text!r} names no artifact", hint="write --lora ID:0.8")
    # ID@STEP, ID@best and STYLE@vN stay in the reference: zlt.artifacts.resolve reads them
    return {"artifact": ref.strip(), "scale": scale, "checkpoint": None}
