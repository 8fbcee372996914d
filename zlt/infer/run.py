"""`generate` and `transfer`: resolve the LoRAs, run the (cached) pipeline, and store the outputs under the artifact.

Both return a `GenerationResult` holding the PIL images and, per image, the parameters that made it. With
`save=True` (the default) they also write `<artifact>/generations/<id>/`: one PNG per image (parameters in text
chunks), `outputs.json`, and `contact_sheet.png` when there are several images. The folder is built under a hidden
staging name and renamed into place, so a failure leaves no half-written generation.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zlt.core.constants import TINY_MODEL
from zlt.core.errors import BadInputError, EnvNotReadyError
from zlt.core.fsutil import atomic_write_json
from zlt.infer.images import (
    DEFAULT_MAX_SIDE,
    Input,
    check_inputs,
    contact_sheet,
    drawable_side,
    edge_map,
    fit_size,
    open_input,
    png_bytes,
    resize_note,
    snap16,
)
from zlt.infer.params import GenerateParams, TransferParams
from zlt.infer.pipeline import PipelineCache, default_cache, plan_device
from zlt.infer.prompts import Prompt, check_prompt_bytes, prompt_warnings
from zlt.infer.resolve import ResolvedLora, resolve_loras, sampling_defaults
from zlt.infer.textenc import FREED, LOADED, encode_first, text_kwargs

OUTPUTS_FILE = "outputs.json"
SHEET_FILE = "contact_sheet.png"
Progress = Callable[[int, int], None]  # (images done, images total)
Notice = Callable[[str], None]  # one line of what is happening (the CLI writes it to stderr)


@dataclass
class GenerationResult:
    id: str
    kind: str  # generate | transfer
    images: list[Any]  # PIL images, in order
    params: list[dict[str, Any]]  # per image: what made it (also in the PNG's text chunks)
    folder: Path | None = None  # None when not saved
    outputs: dict[str, Any] = field(default_factory=dict)  # outputs.json

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "folder": str(self.folder) if self.folder else None, **self.outputs}


def new_generation_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def with_trigger(prompt: str, trigger: str, enabled: bool) -> str:
    """The trigger token in front of the prompt, unless it is off, empty, or already in the prompt."""
    if not enabled or not trigger or trigger in prompt:
        return prompt
    return f"{trigger} {prompt}".strip()


def _generator(seed: int):
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)  # CPU noise: the same image on any device


def _common_params(loras: list[ResolvedLora], params: Any, plan: Any) -> dict[str, Any]:
    first = loras[0]
    return {
        "artifact_id": first.artifact.id, "lora_sha256": first.sha256, "scale": first.scale,
        "checkpoint": first.checkpoint, "base_model": first.artifact.base_name, "precision": plan.dtype,
        "steps": params.steps,
        "guidance": params.guidance, "negative_prompt": params.negative_prompt if params.guidance > 0 else None,
        "loras": [{"artifact_id": x.artifact.id, "sha256": x.sha256, "scale": x.scale, "checkpoint": x.checkpoint}
                  for x in loras],
    }


def encoded_prompts(params: GenerateParams | TransferParams, art: Any, guidance: float) -> list[Prompt]:
    """Every text the pipeline will encode, as encoded (trigger added), with the request field it comes from."""
    if isinstance(params, GenerateParams):
        kind = "generate"
        out = [("generate.prompts", f"prompt {i + 1}", with_trigger(p, art.trigger, params.trigger))
               for i, p in enumerate(params.prompts)]
    else:
        kind = "transfer"
        out = [("transfer.prompt", "the prompt", with_trigger(params.prompt, art.trigger, params.trigger))]
    if params.negative_prompt and guidance > 0:
        out.append((f"{kind}.negative_prompt", "the negative prompt", params.negative_prompt))
    return out


def check_prompts(params: GenerateParams | TransferParams, loras: list[ResolvedLora]) -> None:
    """Before anything is queued or loaded: refuse a prompt longer than the base model can read (zlt.infer.prompts)."""
    art = loras[0].artifact
    guidance = params.guidance if params.guidance is not None else sampling_defaults(art)[1]
    check_prompt_bytes(encoded_prompts(params, art, guidance), art.base_name)


def with_sizes(params: GenerateParams | TransferParams, loras: list[ResolvedLora]) -> Any:
    """`params` with the sizes the request left out filled in, every size checked against what the base model can
    draw (BadInputError naming the field and the limit). Generate: the artifact's training resolution (square),
    within the limit. Transfer: max_side 2048, or the limit where the base model draws less."""
    art = loras[0].artifact
    limit = drawable_side(art.base_name)
    kind = "generate" if isinstance(params, GenerateParams) else "transfer"
    hint_side = snap16(min(art.resolution or 1024, limit))
    what = "the artifact's training resolution" if hint_side == art.resolution else f"the largest {art.base_name} draws"
    if isinstance(params, GenerateParams):
        update = {k: getattr(params, k) if getattr(params, k) is not None else hint_side for k in ("width", "height")}
        for k in ("width", "height"):
            if update[k] > limit:
                raise BadInputError(f"generate.{k}: {update[k]} px is more than {art.base_name} can draw (at most "
                                    f"{limit} px a side)", hint=f"use --size {hint_side}x{hint_side} ({what}) or any "
                                    f"size up to {limit}x{limit}")
        return params.model_copy(update=update)
    side = params.max_side if params.max_side is not None else min(DEFAULT_MAX_SIDE, limit)
    if side > limit:
        raise BadInputError(f"{kind}.max_side: {side} px is more than {art.base_name} can draw (at most {limit} px a "
                            "side)", hint=f"leave --max-side out (inputs are then scaled down to {limit} px) or give "
                            f"at most {limit}")
    return params.model_copy(update={"max_side": side})


def check_request(params: GenerateParams | TransferParams, loras: list[ResolvedLora]) -> None:
    """Everything about a request the base model can refuse (sizes, prompt length), before it is queued or loaded."""
    check_prompts(with_sizes(params, loras), loras)


def _prepare(params: Any, home: Path | None, cache: PipelineCache | None, prefix: str, gpu: int | None):
    """The LoRAs resolved, the pipeline cache and device plan, and `params` with steps/guidance filled in from the
    first artifact where the request left them out."""
    loras = resolve_loras(params.loras, home, prefix=prefix)
    cache = cache if cache is not None else default_cache()
    plan = plan_device(loras[0].artifact.base_model, params.vram_gb, gpu)
    if params.steps is None or params.guidance is None:
        steps, guidance = sampling_defaults(loras[0].artifact)
        params = params.model_copy(update={"steps": params.steps if params.steps is not None else steps,
                                           "guidance": params.guidance if params.guidance is not None else guidance})
    params = with_sizes(params, loras)
    check_prompts(params, loras)
    return loras, cache, plan, params


def _loading(cache: PipelineCache, art: Any, plan: Any, notice: Notice | None, text_encoder: bool) -> None:
    if notice is not None and not cache.loaded(art.base_model, plan, text_encoder):
        notice(f"loading pipeline {art.base_name} on {plan.device} ({plan.dtype}); the first load takes a while")


def draw(pipe: Any, prompts: list[str], count: int, seed: int, *, steps: int, guidance: float, width: int,
         height: int, negative_prompt: str | None = None,
         on_image: Callable[[Any, str, int], None] | None = None, embeds: dict[str, Any] | None = None) -> list[Any]:
    """`count` images per prompt, prompt-major, image i drawn with seed + i (CPU noise): the one drawing loop of
    `generate` and of the evaluation while training, so both give the same image for the same request. `embeds`:
    the prompts encoded beforehand (zlt.infer.textenc), for a pipeline without its text encoder."""
    images: list[Any] = []
    for prompt in prompts:
        for _ in range(count):
            s = seed + len(images)
            image = pipe(**text_kwargs(prompt, negative_prompt, guidance, embeds), height=height, width=width,
                         num_inference_steps=steps, guidance_scale=guidance, generator=_generator(s)).images[0]
            images.append(image)
            if on_image:
                on_image(image, prompt, s)
    return images


def generate(params: GenerateParams, home: Path | None = None, *, cache: PipelineCache | None = None,
             save: bool = True, generation_id: str | None = None, progress: Progress | None = None,
             gpu: int | None = None, notice: Notice | None = None) -> GenerationResult:
    """Text to image with the LoRA(s); image i (prompt-major, then count) uses seed + i. `notice(line)` hears
    what is loading before a pipeline load."""
    loras, cache, plan, params = _prepare(params, home, cache, "generate", gpu)
    art = loras[0].artifact
    if save:
        _check_writable(art.generations_dir, "generate")
    common = _common_params(loras, params, plan)
    total = len(params.prompts) * params.count
    images, records = [], []
    prompts = [with_trigger(p, art.trigger, params.trigger) for p in params.prompts]
    t0 = time.perf_counter()
    embeds = encode_first(art, plan, prompts, common["negative_prompt"], params.guidance, notice)
    _loading(cache, art, plan, notice, embeds is None)
    with cache.use(art.base_model, plan, embeds is None) as entry:
        t1 = time.perf_counter()
        warnings = prompt_warnings(entry.pipe, encoded_prompts(params, art, params.guidance))
        cache.activate(entry, loras)

        def done(image: Any, prompt: str, seed: int) -> None:
            images.append(image)
            records.append({**common, "mode": "generate", "prompt": prompt, "seed": seed, "width": image.width,
                            "height": image.height})
            if progress:
                progress(len(images), total)

        draw(entry.pipe, prompts, params.count, params.seed, steps=params.steps, guidance=params.guidance,
             width=params.width, height=params.height, negative_prompt=common["negative_prompt"], on_image=done,
             embeds=embeds)
    result = GenerationResult(generation_id or new_generation_id(), "generate", images, records)
    result.outputs = _outputs(result, params, loras, plan.to_dict(), time.perf_counter() - t1, t1 - t0, warnings,
                              embeds is None)
    if save:
        _save(result, art.generations_dir)
    return result


def transfer_inputs(params: TransferParams) -> list[Input]:
    return ([(Path(p), p, "transfer.images") for p in params.images]
            + [(Path(p), p, "transfer.control_images") for p in params.control_images or []])


def check_transfer_inputs(params: TransferParams) -> None:
    """Every input image and control map checked from its header (format, caps, the request's pixel budget),
    none decoded: what a submit does, so a queued job never starts with an image it cannot take."""
    check_inputs(transfer_inputs(params))


def load_inputs(params: TransferParams) -> list[Any]:
    """Every input image, all checked from their headers first, then decoded one by one (BadInputError naming
    `transfer.images`), before any model is loaded."""
    check_transfer_inputs(params)
    return [open_input(Path(p), p) for p in params.images]


def transfer(params: TransferParams, home: Path | None = None, *, cache: PipelineCache | None = None,
             save: bool = True, generation_id: str | None = None, progress: Progress | None = None,
             inputs: list[Any] | None = None, gpu: int | None = None, notice: Notice | None = None) -> GenerationResult:
    """Restyle each input image, keeping its aspect: scaled down to max_side (default 2048, or the base model's
    limit), each side snapped down to a multiple of 16; each output's record says so (`resized`).

    img2img (`strength`), or with `control` a ControlNet conditioned on an edge/depth map of the input. A strength
    so low that no denoising step runs returns the input itself (resized to the snapped size).
    """
    inputs = inputs if inputs is not None else load_inputs(params)
    controls = _control_maps(params, inputs)
    loras, cache, plan, params = _prepare(params, home, cache, "transfer", gpu)
    art = loras[0].artifact
    if save:
        _check_writable(art.generations_dir, "transfer")
    common = _common_params(loras, params, plan)
    prompt = with_trigger(params.prompt, art.trigger, params.trigger)
    total = len(inputs) * params.count
    denoise_steps = params.steps - int(max(params.steps - params.steps * params.strength, 0))
    images, records = [], []
    t0 = time.perf_counter()
    embeds = encode_first(art, plan, [prompt], common["negative_prompt"], params.guidance, notice)
    _loading(cache, art, plan, notice, embeds is None)
    with cache.use(art.base_model, plan, embeds is None) as entry:
        t1 = time.perf_counter()
        warnings = prompt_warnings(entry.pipe, encoded_prompts(params, art, params.guidance))
        cache.activate(entry, loras)
        pipe = (cache.controlnet(entry, params.controlnet) if params.control
                else cache.img2img(entry) if denoise_steps >= 1 else None)
        text = text_kwargs(prompt, common["negative_prompt"], params.guidance, embeds)
        for i, src in enumerate(inputs):
            w, h = fit_size(src.width, src.height, params.max_side)
            sized = src.resize((w, h), _lanczos()) if (w, h) != src.size else src
            note = resize_note(src.size, (w, h), params.max_side)
            if note:
                warnings.append(f"{os.path.basename(params.images[i])}: {note}")
            for _ in range(params.count):
                seed = params.seed + len(images)
                if params.control:
                    ctrl = controls[i].resize((w, h), _lanczos())
                    out = pipe(**text, control_image=ctrl, controlnet_conditioning_scale=params.control_scale,
                               height=h, width=w, num_inference_steps=params.steps, guidance_scale=params.guidance,
                               generator=_generator(seed)).images[0]
                elif pipe is None:
                    out = sized.copy()
                else:
                    out = pipe(**text, image=sized, strength=params.strength, height=h, width=w,
                               num_inference_steps=params.steps, guidance_scale=params.guidance,
                               generator=_generator(seed)).images[0]
                images.append(out)
                records.append({**common, "mode": f"transfer-{params.control}" if params.control else "transfer",
                                "prompt": prompt, "seed": seed, "width": out.width, "height": out.height,
                                "strength": params.strength, "input": os.path.basename(params.images[i]),
                                "input_size": [src.width, src.height], "resized": note})
                if progress:
                    progress(len(images), total)
    result = GenerationResult(generation_id or new_generation_id(), "transfer", images, records)
    result.outputs = _outputs(result, params, loras, plan.to_dict(), time.perf_counter() - t1, t1 - t0, warnings,
                              embeds is None)
    if save:
        _save(result, art.generations_dir)
    return result


def _lanczos():
    from PIL import Image

    return Image.Resampling.LANCZOS


def _control_maps(params: TransferParams, inputs: list[Any]) -> list[Any]:
    if not params.control:
        if params.controlnet or params.control_images:
            raise BadInputError("transfer.control: controlnet/control_images given without control",
                                hint="add --control canny or --control depth")
        return []
    if not params.controlnet:
        raise EnvNotReadyError(
            f"transfer.controlnet: --control {params.control} needs a Z-Image ControlNet and none was given",
            hint="pass --controlnet PATH (a local folder or .safetensors file, or a hub id already downloaded); "
            "zlt never downloads one while generating",
        )
    if params.control_images:
        if len(params.control_images) != len(inputs):
            raise BadInputError(f"transfer.control_images: {len(params.control_images)} given for {len(inputs)} "
                                "input image(s)", hint="give one control map per --image")
        return [open_input(Path(p), p, "transfer.control_images") for p in params.control_images]
    if params.control == "depth":
        raise BadInputError("transfer.control_images: --control depth needs depth maps (one per input)",
                            hint="zlt bundles no depth estimator: pass --control-image DEPTH.png per --image")

    return [edge_map(im) for im in inputs]


def _outputs(result: GenerationResult, params: Any, loras: list[ResolvedLora], plan: dict, seconds: float,
             load_seconds: float, warnings: list[str], text_encoder: bool) -> dict:
    files = [f"{i:03d}_seed{rec['seed']}.png" for i, rec in enumerate(result.params)]
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "artifact_id": loras[0].artifact.id,
        "request": params.model_dump(mode="json"),
        "loras": [x.to_dict() for x in loras],
        "device": plan,  # what ran: device and dtype (fp32 on a CPU, whatever the spec's precision says)
        "precision": plan["dtype"],
        "seconds": round(seconds, 3),  # generating (LoRA swap included)
        "load_seconds": round(load_seconds, 3),  # waiting for / loading the base pipeline (0 when cached)
        "text_encoder": LOADED if text_encoder else FREED,  # zlt.infer.textenc: never beside the transformer on a CPU
        "images": [{"file": f, **rec} for f, rec in zip(files, result.params, strict=True)],
        "contact_sheet": SHEET_FILE if len(files) > 1 else None,
        "warnings": warnings,  # e.g. a prompt the text encoder cut at 512 tokens
    }


def _sheet_title(result: GenerationResult) -> str:
    first = result.params[0]
    title = f"{first['artifact_id']} on {first['base_model']}"
    if first["base_model"] == TINY_MODEL:
        title += ": SMOKE TEST (tiny random model; not a style)"
    return title


def _check_writable(parent: Path, prefix: str) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EnvNotReadyError(f"{prefix}: cannot write generations under {parent} ({e.strerror or e})",
                               hint="check the artifact folder's permissions") from None
    if not os.access(parent, os.W_OK):
        raise EnvNotReadyError(f"{prefix}: {parent} is not writable", hint="check the artifact folder's permissions")


def _save(result: GenerationResult, parent: Path) -> None:
    """Write everything into a hidden staging folder, then one rename: all or nothing."""
    final = parent / result.id
    if final.exists():
        raise BadInputError(f"generation {result.id} already exists under {parent}", hint="use another id")
    staging = parent / f".staging-{result.id}-{secrets.token_hex(3)}"
    staging.mkdir(parents=True)
    try:
        for entry, image, rec in zip(result.outputs["images"], result.images, result.params, strict=True):
            (staging / entry["file"]).write_bytes(png_bytes(image, rec))
        if result.outputs["contact_sheet"]:
            captions = [f"seed {r['seed']} scale {r['scale']:g} {r['prompt']}" for r in result.params]
            contact_sheet(result.images, captions, title=_sheet_title(result)).save(staging / SHEET_FILE, format="PNG")
        result.outputs["id"] = result.id
        result.outputs["kind"] = result.kind
        atomic_write_json(staging / OUTPUTS_FILE, result.outputs)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.folder = final
