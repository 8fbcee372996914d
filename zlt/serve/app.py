"""The HTTP API: `create_app(home, data_roots, token, ...)` builds the FastAPI app `zlt serve` runs.

Every route but /healthz needs `Authorization: Bearer <token>`. Routes call `zlt.serve.tools`, which calls the
library; blocking calls (SQLite, files) run in the thread pool.
"""

# No `from __future__ import annotations`: FastAPI reads route annotations at runtime, and some are local types
# (the profile enum built from the bundled profiles).
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from zlt import __version__, backends
from zlt.core.callback_url import CallbackAllow
from zlt.core.errors import ZltError
from zlt.core.paths import default_registry_dir, uploads_dir
from zlt.jobs import job_events
from zlt.profiles import load_profiles
from zlt.serve import openapi, retrain_api, tools, versions_api
from zlt.serve.auth import refusal
from zlt.serve.captions import routes as caption_routes
from zlt.serve.dashboard.pages import install as install_dashboard
from zlt.serve.evaluations import routes as evaluation_routes
from zlt.serve.generations import routes as generation_routes
from zlt.serve.http_errors import BodyLimit, RefuseNul, error_body
from zlt.serve.http_errors import install as install_errors
from zlt.serve.intake import SOURCE_HTTP, Fence, SubmitOptions, backend_doc, backend_enum, load_client_spec
from zlt.serve.jsonbody import parse_json, parse_spec_text, require_json
from zlt.serve.models import Accepted, ErrorBody, Health, JobStatusBody
from zlt.serve.sse import MAX_SEQ, StreamSettings, event_frames, resume_point
from zlt.serve.uploads import Limits, UploadRefused, extract_zip
from zlt.serve.webhooks import WebhookDispatcher
from zlt.spec.agent_schema import agent_spec_schema

JOB_ID = PathParam(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="Job id (or a unique prefix).")
ARTIFACT_ID = PathParam(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,255}$",
                        description="Artifact id, unique id prefix, job id, style name (its current version), "
                                    "STYLE@vN or 'latest' (zlt.artifacts.resolve).")
State = Literal["queued", "preparing", "running", "succeeded", "failed", "cancelled"]


def _backend_query(default: str) -> Any:
    """The `backend` query parameter: any string, the registry's names as its documented enum; the gate refuses an
    unknown one with the registry's error (422 naming training.backend), as the CLI does."""
    return Query(None, description=backend_doc(default), json_schema_extra=backend_enum)


def _profile_names() -> Any:
    """`auto` or a bundled hardware profile, as a type FastAPI validates and documents as an enum."""
    return Literal[("auto", *load_profiles())]  # type: ignore[valid-type]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {400: "Bad request", 401: "Missing or wrong bearer token", 404: "Not found", 409: "Not allowed in this state",
             413: "Upload too large", 415: "Unsupported content type", 422: "Invalid spec or parameters",
             503: "Environment not ready"}
    return {c: {"model": ErrorBody, "description": words.get(c, "Error")} for c in codes}


def _ok(model: Any, *codes: int) -> dict[int | str, dict[str, Any]]:
    """Document the 200 body as `model` while returning the library's dict untouched (same keys, same order)."""
    return {200: {"model": model, "description": "OK"}, **_errors(*codes)}


class Unauthorized(ZltError):
    kind = "unauthorized"
    status = 401


class CsrfRefused(ZltError):
    kind = "csrf"
    status = 403


@dataclass
class ServeConfig:
    """Everything a running server needs to know."""
    home: Path
    token: str
    data_roots: list[Path] = field(default_factory=list)
    # A spec's output.registry.path must lie in the server's registry (<ZLT_HOME>/artifacts/lora) or one of
    # these folders the operator listed (--output-root).
    output_roots: list[Path] = field(default_factory=list)
    # Local model files/folders a spec may name besides hub ids: <ZLT_HOME>/models and these (--model-root).
    model_roots: list[Path] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    webhook_secret: str | None = None  # None: webhooks are not sent
    webhook_poll_s: float = 1.0
    # Callback URLs admitted besides public addresses: CIDRs and host names (--callback-allow, $ZLT_CALLBACK_ALLOW).
    callback_allow: CallbackAllow | list[str] | tuple[str, ...] = ()
    stream: StreamSettings = field(default_factory=StreamSettings)

    def __post_init__(self) -> None:
        self.callback_allow = CallbackAllow.parse(self.callback_allow)

    def fence(self) -> Fence:
        registry = default_registry_dir(self.home)
        outputs = [registry] + [p for p in self.output_roots if p != registry]
        models = [self.home / "models"] + [p for p in self.model_roots if p != self.home / "models"]
        return Fence(tuple(self.data_roots), tuple(outputs), self.limits, model_roots=tuple(models),
                     callback_allow=CallbackAllow.parse(self.callback_allow))


def create_app(home: Path, data_roots: list[Path], token: str, **options: Any) -> FastAPI:
    """The app for `zlt serve`; `options` are the other `ServeConfig` fields."""
    return build_app(ServeConfig(home=Path(home), token=token, data_roots=[Path(p) for p in data_roots], **options))


def _lifespan(cfg: ServeConfig):
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        dispatcher = None
        if cfg.webhook_secret:
            dispatcher = WebhookDispatcher(cfg.home, cfg.webhook_secret, poll_s=cfg.webhook_poll_s,
                                           allow=cfg.callback_allow)
            dispatcher.start()
        try:
            yield
        finally:
            if dispatcher is not None:
                dispatcher.stop()

    return lifespan


def build_app(cfg: ServeConfig) -> FastAPI:
    app = FastAPI(
        title="zlt", version=__version__, lifespan=_lifespan(cfg), openapi_url=None, docs_url=None, redoc_url=None,
        description="LoRA training on Tongyi-MAI/Z-Image-Turbo as a service: submit a job spec, get a job id, "
                    "follow its events, fetch its artifacts. Every route but /healthz needs `Authorization: Bearer "
                    "<token>` (the token is in <ZLT_HOME>/serve/token).",
    )
    install_errors(app, home=cfg.home)
    app.add_exception_handler(Unauthorized, _unauthorized)  # type: ignore[arg-type]
    openapi.install(app)
    app.add_middleware(BodyLimit, max_upload_bytes=cfg.limits.max_upload_bytes, max_json_bytes=cfg.limits.max_json_bytes)
    app.add_middleware(RefuseNul)

    bearer = HTTPBearer(auto_error=False, description="The token in <ZLT_HOME>/serve/token (or --token-file).")

    def require_token(request: Request, _creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        # The bearer header, or the dashboard's session cookie (+ its CSRF header on a POST): zlt/serve/auth.py
        why = refusal(request.method, request.headers, request.cookies, cfg.token)
        if why == "csrf":
            raise CsrfRefused("missing or wrong CSRF token for this session",
                              hint="send the session's token in the X-CSRF-Token header, or use the bearer header")
        if why is not None:
            raise Unauthorized("missing or wrong bearer token",
                               hint="send 'Authorization: Bearer <token>'; the token is in <ZLT_HOME>/serve/token")

    @app.get("/healthz", response_model=Health, tags=["meta"])
    def healthz() -> dict[str, Any]:
        """Liveness; the only route without a token."""
        return {"ok": True, "version": __version__}

    api = APIRouter(dependencies=[Depends(require_token)], responses=_errors(401))
    _meta_routes(api, app, cfg)
    _job_routes(api, cfg)
    _artifact_routes(api, cfg)
    generation_routes(api, cfg, _json_body, _errors)
    evaluation_routes(api, cfg, _json_body, _errors)
    caption_routes(api, cfg, _json_body, _errors)
    versions_api.routes(api, cfg, _errors)
    app.include_router(api)
    install_dashboard(app, cfg)  # the web pages (zlt/serve/dashboard): the same token, same library calls
    return app


async def _unauthorized(_request: Request, exc: Unauthorized) -> JSONResponse:
    return JSONResponse(error_body(exc.kind, exc.message, exc.hint), status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})


async def _json_body(request: Request) -> Any:
    """The body of a route that reads JSON: 415 for another content type (one rule for every such route), parsed off
    the event loop (a 2 MiB body takes a while to read and check; /healthz and the streams must not wait on it)."""
    require_json(request.headers.get("content-type", ""))
    return await run_in_threadpool(parse_json, await request.body())


def _meta_routes(api: APIRouter, app: FastAPI, cfg: ServeConfig) -> None:
    Profile = _profile_names()

    @api.get("/openapi.json", tags=["meta"], include_in_schema=False)
    def openapi_doc() -> dict[str, Any]:
        return app.openapi()

    @api.get("/v1/schema", tags=["specs"])
    def schema() -> dict[str, Any]:
        """The job spec's JSON Schema with each preset's effective defaults and the enforced bounds."""
        return agent_spec_schema(backends.names(), dataset_path=openapi.HTTP_DATASET_PATH)

    @api.post("/v1/specs/validate", tags=["specs"], responses=_errors(400, 422),
              openapi_extra=openapi.json_spec_body("The job spec to check."))
    async def validate(request: Request, backend: str | None = _backend_query("the spec's training.backend"),
                       ) -> dict[str, Any]:
        """Check a spec without submitting it (`zlt validate`); every problem at once (422)."""
        data = await _json_body(request)
        return await run_in_threadpool(lambda: tools.validate_spec(data, cfg.fence(), backend=backend))

    @api.post("/v1/specs/render", tags=["specs"], responses=_errors(400, 422),
              openapi_extra=openapi.json_spec_body("The job spec to render."))
    async def render(
        request: Request, backend: str | None = _backend_query("the spec's training.backend"),
        profile: Profile = Query("auto", description="Hardware profile, or auto."),  # type: ignore[valid-type]
        vram_gb: float | None = Query(None, gt=0, le=1024, description="Plan for a GPU with this much memory."),
    ) -> dict[str, Any]:
        """The trainer config files and argv for a spec and hardware profile (what `zlt render --json` prints)."""
        data = await _json_body(request)
        return await run_in_threadpool(tools.render_config, data, cfg.fence(), backend=backend, profile=profile,
                                       vram_gb=vram_gb)


async def _submit(request: Request, cfg: ServeConfig, opts: SubmitOptions) -> JSONResponse:
    ctype = request.headers.get("content-type", "").lower()
    upload_dir: Path | None = None
    if ctype.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=4, max_part_size=cfg.limits.max_json_bytes) as form:
            data = await run_in_threadpool(parse_spec_text, form.get("spec"), SOURCE_HTTP)
            upload = form.get("dataset")
            if upload is not None and not isinstance(upload, UploadFile):
                raise UploadRefused("the 'dataset' form field must be a file (a zip of the dataset folder)")
            if upload is not None:
                # Check the spec before touching the zip: a bad spec costs the client nothing on disk.
                uploads = uploads_dir(cfg.home)  # on the shared jobs root when there is one: every worker sees it
                await run_in_threadpool(lambda: load_client_spec(data, cfg.fence(), dataset_dir=uploads / "pending"))
                extracted = await run_in_threadpool(extract_zip, upload.file, uploads, cfg.limits,
                                                    upload.filename or "dataset")
                upload_dir = extracted.root
    else:
        require_json(ctype, also=", or multipart/form-data with fields 'spec' and 'dataset'")
        data = await _json_body(request)
    try:
        result = await run_in_threadpool(tools.submit, cfg.home, data, cfg.fence(), opts, dataset_dir=upload_dir)
    except BaseException:
        if upload_dir is not None:  # our own extraction for a job that was never queued
            shutil.rmtree(upload_dir.parent, ignore_errors=True)
        raise
    status_url = str(request.url_for("get_job", job_id=result["job_id"]))
    events_url = str(request.url_for("job_events_stream", job_id=result["job_id"]))
    body = {"job_id": result["job_id"], "state": result["state"], "status_url": status_url, "events_url": events_url,
            "warnings": result.get("warnings", []), "job": {k: v for k, v in result.items() if k != "warnings"}}
    return JSONResponse(body, status_code=202, headers={"Location": status_url})


def _job_routes(api: APIRouter, cfg: ServeConfig) -> None:
    Profile = _profile_names()

    def submit_options(
        priority: int | None = Query(None, ge=-100, le=100, description="Queue priority (default: job.priority)."),
        backend: str | None = _backend_query("the spec's training.backend"),
        profile: Profile = Query("auto", description="Hardware profile, or auto."),  # type: ignore[valid-type]
        skip_preflight: bool = Query(False, description="Skip the GPU/trainer checks before the run."),
    ) -> SubmitOptions:
        return SubmitOptions(priority=priority, backend=backend, profile=profile, skip_preflight=skip_preflight)

    async def submit_job(request: Request, opts: SubmitOptions = Depends(submit_options)) -> JSONResponse:
        """Submit a LoRA training job. Returns 202 with the job id and where to follow it."""
        return await _submit(request, cfg, opts)

    async def lora_train(request: Request, opts: SubmitOptions = Depends(submit_options)) -> JSONResponse:
        """Alias of POST /v1/jobs for the body `{model, dataset, training, output, job}` (the job spec)."""
        return await _submit(request, cfg, opts)

    for path, endpoint in (("/v1/jobs", submit_job), ("/lora/train", lora_train)):
        api.add_api_route(path, endpoint, methods=["POST"], status_code=202, response_model=Accepted,
                          responses=_errors(400, 413, 415, 422, 503), openapi_extra=openapi.submit_body(),
                          tags=["jobs"])

    @api.get("/v1/jobs", response_model=None, tags=["jobs"], responses=_ok(list[JobStatusBody], 422))
    def list_jobs(state: State | None = Query(None, description="Only jobs in this state."),
                  limit: int = Query(50, ge=1, le=1000, description="At most this many, newest first.")) -> Any:
        """Jobs, newest first (what `zlt jobs --json` prints)."""
        return tools.jobs(cfg.home, state, limit)

    @api.get("/v1/jobs/{job_id}", name="get_job", response_model=None, tags=["jobs"],
             responses=_ok(JobStatusBody, 404, 422))
    def get_job(job_id: str = JOB_ID) -> Any:
        """The job's status object (what `zlt status --json` prints)."""
        return tools.status(cfg.home, job_id)

    @api.post("/v1/jobs/{job_id}/cancel", response_model=None, tags=["jobs"], responses=_ok(JobStatusBody, 404, 409, 422))
    def cancel(job_id: str = JOB_ID) -> Any:
        """Cancel: a queued job at once; a running one stops gracefully (its state follows)."""
        return tools.cancel(cfg.home, job_id)

    @api.post("/v1/jobs/{job_id}/retry", response_model=None, tags=["jobs"], responses=_ok(JobStatusBody, 404, 409, 422))
    def retry(job_id: str = JOB_ID) -> Any:
        """Queue a failed or cancelled job again; it resumes from its latest checkpoint."""
        return tools.retry(cfg.home, job_id)

    @api.get("/v1/jobs/{job_id}/events", name="job_events_stream", tags=["jobs"], responses={
        200: {"description": "Server-Sent Events: `id` is the event's seq, `event` its type, `data` the event JSON.",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **_errors(404, 422)}, response_class=StreamingResponse)
    async def job_events_stream(
        request: Request, job_id: str = JOB_ID,
        after: int = Query(0, ge=0, le=MAX_SEQ, description="Send events with seq greater than this (Last-Event-ID wins)."),
        follow: bool = Query(True, description="Keep the stream open until the job ends; false: replay and close."),
        last_event_id: str | None = Header(None, alias="Last-Event-ID", description="Resume after this seq."),
    ) -> StreamingResponse:
        """The job's events as they happen, replayable from any seq."""
        start = resume_point(last_event_id, after)  # a header no seq could be is 400 before the store is read
        full_id = (await run_in_threadpool(tools.status, cfg.home, job_id))["job_id"]

        async def read_events(seq: int) -> list[dict[str, Any]]:
            return await run_in_threadpool(job_events, cfg.home, full_id, seq)

        async def read_state() -> str:
            try:
                return (await run_in_threadpool(tools.status, cfg.home, full_id))["state"]
            except ZltError:
                return "cancelled"  # the job is gone from the store: nothing more will come

        frames = event_frames(read_events, read_state, start, follow=follow,
                              disconnected=request.is_disconnected, settings=cfg.stream)
        return StreamingResponse(frames, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _artifact_routes(api: APIRouter, cfg: ServeConfig) -> None:
    @api.get("/v1/artifacts", tags=["artifacts"])
    def list_artifacts() -> list[dict[str, Any]]:
        """Every artifact in the registry, oldest first."""
        return tools.artifacts(cfg.home)

    @api.get("/v1/artifacts/{artifact_id}", tags=["artifacts"], responses=_errors(400, 404, 422))
    def get_artifact(artifact_id: str = ARTIFACT_ID) -> dict[str, Any]:
        """One artifact: metadata, files with sha256, loss-curve summary."""
        return tools.artifact(cfg.home, artifact_id)

    @api.get("/v1/artifacts/{artifact_id}/files/{name:path}", tags=["artifacts"], response_class=FileResponse,
             responses={200: {"description": "The file's bytes.",
                              "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                    "format": "binary"}}}},
                        **_errors(400, 404, 422)})
    def artifact_file(artifact_id: str = ARTIFACT_ID, name: str = PathParam(..., description="File path in the artifact.")):
        """Download one file of an artifact (e.g. lora.safetensors); paths are fenced to the artifact's folder."""
        path = tools.artifact_path(cfg.home, artifact_id, name)
        return FileResponse(path, filename=path.name)

    @api.post("/v1/artifacts/{ref}/retrain", tags=["artifacts"], status_code=202,
              responses=_errors(400, 404, 413, 422, 503), openapi_extra=retrain_api.body_openapi())
    async def retrain_artifact(request: Request, ref: str = PathParam(
            ..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,255}$",
            description="Artifact id, STYLE@vN, a style name (its current version), or a job id.")) -> JSONResponse:
        """Train a finished LoRA further as its style's next version (`zlt retrain`); body: steps | more_steps,
        dataset, set, backend, profile, priority, skip_preflight. Returns 202 with the job and its `retrain` plan."""
        body = retrain_api.parse_body(await _json_body(request) if await request.body() else None)
        result = await run_in_threadpool(retrain_api.retrain, cfg.home, ref, body, cfg.fence())
        status_url = str(request.url_for("get_job", job_id=result["job_id"]))
        return JSONResponse({"job_id": result["job_id"], "state": result["state"], "status_url": status_url,
                             "retrain": result["retrain"], "job": result}, status_code=202,
                            headers={"Location": status_url})
