"""HTTP routes for using a LoRA: `POST /v1/generations`, `POST /v1/transfers`, and their results.

Both queue a job (202, like `POST /v1/jobs`) that the worker runs on its kept-loaded pipeline. Transfer input images
come as multipart files (checked from their header, capped like dataset uploads) or, as JSON, as paths that must lie
inside the server's data roots. Results: `GET /v1/generations/{job_id}` (status + outputs.json) and
`GET /v1/generations/{job_id}/files/{name}` (a PNG, fenced to the generation's folder).
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from zlt.core.errors import BadInputError, NotFoundError
from zlt.flows.fences import Roots
from zlt.flows.generation import job_kind, submit_generation
from zlt.flows.request_gate import LOCAL
from zlt.infer.images import check_inputs
from zlt.infer.params import GenerateParams, TransferParams
from zlt.jobs.api import open_store
from zlt.jobs.view import status_dict
from zlt.serve.jsonbody import parse_json, require_json
from zlt.serve.uploads import MiB, UploadRefused, UploadTooLarge

JOB_ID = PathParam(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="Job id (or a unique prefix).")
MAX_IMAGE_BYTES = 64 * MiB  # one uploaded image; the request as a whole is capped by the server's upload limit
UPLOAD_FIELDS = ("image", "control_image")


def submit(home: Path, kind: str, data: Any, priority: int = 0, roots: Roots = LOCAL,
           own: Path | None = None) -> dict[str, Any]:
    """Queue a generation or transfer. The request gate (zlt/flows/request_gate.py, run by submit_generation) fences
    its paths to `roots`: input images to the data roots, a ControlNet to the model roots; `own` is this request's
    upload folder (the server's own files)."""
    return submit_generation(home, kind, data, priority=priority, roots=roots, own=own)


def generation(home: Path, job_id: str) -> dict[str, Any]:
    """A generation job's status, and once it succeeded, its outputs.json."""
    with open_store(home) as store:
        row = store.get(job_id)
        status = status_dict(row)
    if job_kind(row["snapshot_json"]) is None:
        raise NotFoundError(f"job {row['id']} is not a generation or transfer", hint="see GET /v1/jobs/{job_id}")
    outputs = None
    if status["state"] == "succeeded" and status["artifact_path"]:
        try:
            outputs = json.loads((Path(status["artifact_path"]) / "outputs.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            outputs = None
    return {"job": status, "outputs": outputs}


def generation_file(home: Path, job_id: str, name: str) -> Path:
    info = generation(home, job_id)
    folder = info["job"]["artifact_path"]
    if not info["outputs"] or not folder:
        raise NotFoundError(f"generation {info['job']['job_id']} has no outputs yet (state {info['job']['state']})")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file() or ".." in Path(name).parts:
        raise NotFoundError(f"generation {info['job']['job_id']} has no file {name!r}",
                            hint="the files are listed in outputs.images")
    return path


async def _save_uploads(form: Any, folder: Path) -> dict[str, list[str]]:
    """The uploaded images, all checked from their headers (count, format, pixel caps, the request's pixel budget)
    before any is decoded or written, then written under `folder`; the job decodes them."""
    saved: dict[str, list[str]] = {f: [] for f in UPLOAD_FIELDS}
    for key in form:
        if key not in (*UPLOAD_FIELDS, "request"):
            raise UploadRefused(f"transfer.{key}: unknown form field", hint="send 'request' (JSON) and 'image' files")
    got: list[tuple[str, bytes, str]] = []  # (form field, bytes, label)
    for field_name in UPLOAD_FIELDS:
        for i, item in enumerate(form.getlist(field_name)):
            if not isinstance(item, UploadFile):
                raise UploadRefused(f"transfer.{field_name}s: form field '{field_name}' must be a file")
            data = await item.read(MAX_IMAGE_BYTES + 1)
            label = Path(item.filename or f"{field_name}{i}.png").name or f"{field_name}{i}.png"
            if len(data) > MAX_IMAGE_BYTES:
                raise UploadTooLarge(f"transfer.{field_name}s: {label} is larger than {MAX_IMAGE_BYTES // MiB} MiB")
            got.append((field_name, data, label))
    await run_in_threadpool(check_inputs, [(data, label, f"transfer.{f}s") for f, data, label in got])
    for f, data, label in got:
        dest = folder / f"{f}{len(saved[f]):03d}_{secrets.token_hex(2)}{Path(label).suffix.lower() or '.png'}"
        dest.write_bytes(data)
        saved[f].append(str(dest))
    return saved


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON Schema with its `$defs` substituted in place (OpenAPI resolves refs from the document root)."""
    defs = schema.pop("$defs", {})

    def sub(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return sub(defs[ref.removeprefix("#/$defs/")])
            return {k: sub(v) for k, v in node.items()}
        return [sub(x) for x in node] if isinstance(node, list) else node

    return sub(schema)


def request_bodies() -> tuple[dict[str, Any], dict[str, Any]]:
    """OpenAPI request bodies of the two POST routes, from the same pydantic models the library validates with."""
    gen = {"requestBody": {"required": True, "description": "Generation parameters (docs/generate.md).",
                           "content": {"application/json": {"schema": _inline(GenerateParams.model_json_schema())}}}}
    tr_schema = _inline(TransferParams.model_json_schema())
    form = {"type": "object", "required": ["request", "image"], "additionalProperties": False, "properties": {
        "request": {"type": "string", "description": "The transfer parameters as JSON text, without `images`."},
        "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "One file per input image (PNG, JPEG, WebP)."},
        "control_image": {"type": "array", "items": {"type": "string", "format": "binary"},
                          "description": "Control maps, one per image (optional)."}}}
    tr = {"requestBody": {"required": True, "description": "Transfer parameters; images uploaded, or as paths inside "
                          "the server's data roots.",
                          "content": {"application/json": {"schema": tr_schema}, "multipart/form-data": {"schema": form}}}}
    return gen, tr


def routes(api: APIRouter, cfg: Any, json_body: Any, errors: Any) -> None:
    """Add the generation routes to the authenticated router (`cfg` is the server's ServeConfig)."""

    def accepted(request: Request, st: dict[str, Any]) -> JSONResponse:
        url = str(request.url_for("get_generation", job_id=st["job_id"]))
        body = {"job_id": st["job_id"], "state": st["state"], "kind": st["kind"], "status_url": url,
                "events_url": str(request.url_for("job_events_stream", job_id=st["job_id"])), "job": st}
        return JSONResponse(body, status_code=202, headers={"Location": url})

    gen_body, transfer_body = request_bodies()

    @api.post("/v1/generations", status_code=202, tags=["generations"], responses=errors(400, 404, 413, 422, 503),
              openapi_extra=gen_body)
    async def create_generation(request: Request) -> JSONResponse:
        """Queue text-to-image with trained LoRA(s). Body: `{"loras": [{"artifact", "scale", "checkpoint"}],
        "prompts": [...], "count", "seed", "steps", "guidance", "width", "height", "trigger"}` (docs/generate.md)."""
        data = await json_body(request)
        st = await run_in_threadpool(submit, cfg.home, "generate", data, 0, cfg.fence().roots())
        return accepted(request, st)

    @api.post("/v1/transfers", status_code=202, tags=["generations"], responses=errors(400, 404, 413, 415, 422, 503),
              openapi_extra=transfer_body)
    async def create_transfer(request: Request) -> JSONResponse:
        """Queue a style transfer. multipart/form-data: field `request` (the JSON parameters without `images`) and
        one `image` file per input (optional `control_image` files); or JSON with `images` as paths inside the
        server's data roots."""
        ctype = request.headers.get("content-type", "").lower()
        upload_dir: Path | None = None
        try:
            if ctype.startswith("multipart/form-data"):
                upload_dir = cfg.home / "serve" / "uploads" / f"transfer-{secrets.token_hex(4)}"
                upload_dir.mkdir(parents=True)
                async with request.form(max_files=128, max_fields=2, max_part_size=cfg.limits.max_json_bytes) as form:
                    raw = form.get("request") or "{}"
                    # parse_json: deep nesting, huge ints and NaN are 4xx (zlt/serve/jsonbody.py), off the event loop
                    data = await run_in_threadpool(parse_json, raw, "transfer.request") if isinstance(raw, str) else None
                    if not isinstance(data, dict):
                        raise BadInputError("transfer.request: the form field 'request' must be a JSON object",
                                            hint="see docs/generate.md")
                    saved = await _save_uploads(form, upload_dir)
                if saved["image"]:
                    data["images"] = saved["image"]
                if saved["control_image"]:
                    data["control_images"] = saved["control_image"]
            else:  # the one content-type rule of JSON routes (zlt/serve/jsonbody.py): else 415
                require_json(ctype, also=", or multipart/form-data with 'request' and 'image' files")
                data = await json_body(request)
            st = await run_in_threadpool(submit, cfg.home, "transfer", data, 0, cfg.fence().roots(), upload_dir)
        finally:
            if upload_dir is not None:  # the job copied what it needs into its own folder
                shutil.rmtree(upload_dir, ignore_errors=True)
        return accepted(request, st)

    @api.get("/v1/generations/{job_id}", name="get_generation", tags=["generations"], responses=errors(404, 422))
    def get_generation(job_id: str = JOB_ID) -> dict[str, Any]:
        """A generation or transfer job: `job` (status) and, once it succeeded, `outputs` (outputs.json)."""
        return generation(cfg.home, job_id)

    @api.get("/v1/generations/{job_id}/files/{name:path}", tags=["generations"], response_class=FileResponse,
             responses={200: {"description": "The PNG (parameters in its text chunks).",
                              "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
                        **errors(404, 422)})
    def generation_file_route(job_id: str = JOB_ID, name: str = PathParam(..., description="File name in outputs.")):
        """Download one output (a PNG listed in outputs.images, contact_sheet.png, or outputs.json)."""
        path = generation_file(cfg.home, job_id, name)
        return FileResponse(path, filename=path.name)
