"""The gate every generation, transfer, evaluation and caption *request* passes before it becomes a job: the
sibling of the spec gate (zlt/flows/gate.py `admit`), for the other door a client has into the worker.

`admit_request(kind, request, roots)`: validate (the request's pydantic model; errors named `kind.field`) -> fence
every path-like field against the caller's roots (zlt/flows/fences.py): input images inside the data roots, model
folders and files (CLIP, ControlNet, a captioner) inside the model roots, a caption request's folder by the dataset
fence (zlt/flows/fences.py `fence_dataset_path`); a NUL byte or a pickle weights file (.bin, .pt, .ckpt,
...) is refused wherever it lies; a local CLIP folder inside the roots that cannot load is refused at once (bad
input, not a missing environment) -> the request, its local paths made absolute (the worker runs elsewhere).

`submit_generation`, `submit_evaluation` and `admit_caption` (zlt/flows) call it, so the HTTP routes, the MCP tools
and the CLI get one answer: a SpecError (HTTP 422, exit 2) naming each field, before any job exists. The local CLI
passes no roots (`Roots()`: nothing fenced), as it does to `admit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.caption.request import CaptionRequest
from zlt.core.constants import PICKLE_SUFFIXES
from zlt.core.errors import BadInputError, FieldError, SpecError
from zlt.eval.request import EvalRequest, parse_eval_request
from zlt.flows.fences import FOLDER, FOLDER_OR_FILE, Roots, check_model_value, fence_dataset_path, locate
from zlt.infer.params import GenerateParams, TransferParams, parse_request, validate
from zlt.preflight.clip_model import clip_folder_problem

Request = GenerateParams | TransferParams | EvalRequest | CaptionRequest
LOCAL = Roots()
MODELS = {"generate": GenerateParams, "transfer": TransferParams, "evaluate": EvalRequest, "caption": CaptionRequest}

# Every path-like field of a request and what it names. A new path field of a request is added here, and nowhere
# else. LoRA references (`loras[].artifact`) are resolved through the registry only, never opened as paths.
IMAGE_FIELDS = {"transfer": ("images", "control_images")}  # input files: data roots
MODEL_FIELDS = {"transfer": {"controlnet": FOLDER_OR_FILE}, "evaluate": {"clip": FOLDER},  # weights: model roots
                "caption": {"model": FOLDER}}
DATASET_FIELDS = {"caption": ("path",)}  # dataset folders: the dataset fence (every file inside a data root)


def parse(kind: str, request: Any) -> Request:
    """A request dict (an HTTP or MCP body, a CLI's fields) or an already built model -> its model."""
    if kind not in MODELS:
        raise BadInputError(f"kind {kind!r}: not a request kind", hint=f"use one of: {', '.join(MODELS)}")
    if isinstance(request, MODELS[kind]):
        return request
    if kind == "evaluate":
        return parse_eval_request(request)
    if not isinstance(request, dict):
        raise BadInputError(f"{kind}.request: the body must be a JSON object", hint="see docs/generate.md")
    if kind == "caption":
        return validate(CaptionRequest, request, kind)
    return parse_request(kind, request)


def _local(raw: str) -> str:
    """An unfenced (local CLI) path made absolute where it can be: the worker runs in another folder."""
    try:
        p = Path(raw).expanduser()
        return str(p.resolve()) if p.exists() else raw
    except (OSError, RuntimeError):
        return raw


def _fence_image(field: str, raw: str, roots: Roots, own: Path | None) -> tuple[str | None, FieldError | None]:
    """An input image a client named: a file inside a data root (or inside `own`, the server's upload folder)."""
    if "\x00" in raw:
        return None, FieldError(field, "NUL byte in the path", "send a plain path, or upload the image")
    if own is not None:
        found, inside = locate(raw, [own])
        if inside and found is not None and found.is_file():
            return str(found), None
    if roots.data is None:
        return _local(raw), None
    if not roots.data:
        return None, FieldError(field, "this server accepts no file paths (it was started without --data-root)",
                                "upload the images as multipart files (field 'image')")
    found, _ = locate(raw, list(roots.data))
    if found is None or not found.is_file():  # one answer whether or not it exists outside the roots
        return None, FieldError(field, f"{raw} is not a file inside the server's data roots",
                                "upload it as a multipart file (field 'image'), or move it into a data root")
    return str(found), None


def _fence_dataset(field: str, raw: str, roots: Roots) -> tuple[str | None, FieldError | None]:
    """A dataset folder a client named: the spec gate's dataset fence (inside a data root, no link out)."""
    if roots.data is None:
        if "\x00" in raw:
            return None, FieldError(field, "NUL byte in the path", "send a plain path")
        return _local(raw), None
    try:
        return str(fence_dataset_path(raw, list(roots.data), roots.limits)), None
    except BadInputError as e:
        return None, FieldError(field, e.message.removeprefix("dataset.path: "), e.hint)


def _weights_problem(field: str, folder: Path) -> str | None:
    """What keeps a local model folder inside the roots from loading (checked at submit: a bad input, 422)."""
    if field == "evaluate.clip":
        return clip_folder_problem(folder, need_weights=True)
    if not any(folder.glob("*.safetensors")):
        return "holds no .safetensors weights (zlt never loads pickle .bin/.pt weights: they can run code)"
    return None


def _fence_model(field: str, raw: str, shape: str, roots: Roots) -> tuple[str | None, FieldError | None]:
    """A model a client named: a hub id, or a folder/file inside a model root that zlt can load."""
    if roots.models is None:  # the local CLI: only what can never load is refused here
        if "\x00" in raw:
            return None, FieldError(field, "NUL byte in the path", "send a plain path or a hub id")
        if raw.lower().endswith(PICKLE_SUFFIXES):
            return None, FieldError(field, f"{raw!r}: only .safetensors files are accepted (pickle can run code)",
                                    "convert the weights to .safetensors")
        return _local(raw), None
    used, err = check_model_value(field, raw, list(roots.models), shape=shape)
    if err is not None or used is None or not Path(used).is_absolute():  # refused, or a hub id
        return used, err
    if Path(used).is_dir():
        problem = _weights_problem(field, Path(used))
        if problem:
            return None, FieldError(field, f"{raw!r} {problem}", "name a folder written by save_pretrained with "
                                    "safetensors weights, or a hub id")
    return used, None


def _ref_errors(kind: str, params: Request) -> list[FieldError]:
    loras = getattr(params, "loras", None) or []
    return [FieldError(f"{kind}.loras", "NUL byte in the artifact reference", "send the artifact id or style name")
            for use in loras if "\x00" in use.artifact]


def admit_request(kind: str, request: Any, roots: Roots = LOCAL, *, own: Path | None = None) -> Request:
    """Validate and fence a generation (`generate`, `transfer`), `evaluate` or `caption` request; BadInputError/SpecError (422,
    exit 2) naming every bad field, else the request with its local paths absolute.

    `roots`: the caller's fence (`Roots()`, the default, fences nothing: the local CLI). `own`: the server's own
    upload folder of this request (its files pass, as an uploaded dataset does at the spec gate)."""
    params = parse(kind, request)
    errors = _ref_errors(kind, params)
    update: dict[str, Any] = {}
    for name in IMAGE_FIELDS.get(kind, ()):
        values = getattr(params, name)
        if values:
            fenced = [_fence_image(f"{kind}.{name}", str(v), roots, own) for v in values]
            errors += [err for _, err in fenced if err is not None]
            update[name] = [used for used, _ in fenced]
    for name in DATASET_FIELDS.get(kind, ()):
        used, err = _fence_dataset(f"{kind}.{name}", str(getattr(params, name)), roots)
        errors += [err] if err is not None else []
        update[name] = used
    for name, shape in MODEL_FIELDS.get(kind, {}).items():
        value = getattr(params, name)
        if isinstance(value, str):
            used, err = _fence_model(f"{kind}.{name}", value, shape, roots)
            errors += [err] if err is not None else []
            update[name] = used
    if len(errors) == 1:
        raise BadInputError(f"{errors[0].path}: {errors[0].message}", hint=errors[0].hint)
    if errors:
        raise SpecError(errors, source=f"{kind} request")
    return params.model_copy(update=update)
