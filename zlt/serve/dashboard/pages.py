"""The dashboard's routes under /ui: pages (GET), actions (POST forms), the login form and the static files.

Same rules as the API (zlt/serve/auth.py): the bearer header, or the session cookie the login form sets (HttpOnly,
SameSite=Strict); every action also needs the session's CSRF token (form field `csrf`) unless it came with the
bearer header. Each action calls the same function as its API route: cancel/retry `zlt.serve.tools`, promote and
rollback `zlt.serve.versions_api`, generate `zlt.serve.generations.submit`.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

import zlt.serve.dashboard.views as views
from zlt.core.errors import BadInputError, ZltError
from zlt.serve import auth, generations, tools, versions_api
from zlt.serve.dashboard.render import render
from zlt.serve.http_errors import api_error, status_and_body

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".png": "image/png"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginNeeded(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class CsrfFailed(ZltError):
    kind = "csrf"
    status = 403


def _page(request: Request, template: str, cfg: Any, status: int = 200, **ctx: Any) -> HTMLResponse:
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    html = render(template, request=request, csrf=auth.csrf_token(cookie, cfg.token) or "",
                  session=auth.session_nonce(cookie, cfg.token) is not None, msg=request.query_params.get("msg"),
                  **ctx)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _safe_next(url: str | None) -> str:
    """Only a path of the dashboard itself: never another site after login."""
    if url and url.startswith("/ui/") and not url.startswith("//") and "\\" not in url:
        return url
    return "/ui/jobs"


def _back(url: str, msg: str) -> RedirectResponse:
    return RedirectResponse(f"{url}?{urlencode({'msg': msg})}", status_code=303)


def install(app: FastAPI, cfg: Any) -> None:
    """Mount the dashboard on the server's app (`cfg` is its ServeConfig)."""
    ui = APIRouter(include_in_schema=False)

    def reader(request: Request) -> None:
        if auth.refusal("GET", request.headers, request.cookies, cfg.token) is not None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginNeeded(path)

    async def actor(request: Request) -> None:
        """An action: the bearer header, or a session whose CSRF token the form carries."""
        if auth.bearer_matches(request.headers.get("authorization"), cfg.token):
            return
        cookie = request.cookies.get(auth.SESSION_COOKIE)
        if auth.session_nonce(cookie, cfg.token) is None:
            raise LoginNeeded("/ui/jobs")
        async with request.form(max_files=0, max_fields=16) as form:
            given = form.get("csrf")
        if not auth.csrf_matches(cookie, given if isinstance(given, str) else None, cfg.token):
            raise CsrfFailed("missing or wrong CSRF token for this session",
                             hint="reload the page and submit the form again")

    async def on_login_needed(request: Request, exc: LoginNeeded) -> Response:
        if request.method in auth.SAFE_METHODS:
            return RedirectResponse(f"/ui/login?{urlencode({'next': exc.next_url})}", status_code=303)
        return _page(request, "error.html", cfg, 401, title="Not logged in",
                     message="this action needs a login (or the bearer header)", hint="log in and try again")

    app.add_exception_handler(LoginNeeded, on_login_needed)  # type: ignore[arg-type]

    def error_page(request: Request, exc: ZltError) -> HTMLResponse:
        status, body = status_and_body(exc)
        body = api_error(body, cfg.home)  # as the API words it: field names, not the server's folders
        return _page(request, "error.html", cfg, status, title=f"{status} {body.get('error', '')}",
                     message=body.get("message"), hint=body.get("hint"), detail=body.get("detail") or [])

    async def guarded(request: Request, fn: Any, *args: Any) -> Any:
        try:
            return await run_in_threadpool(fn, *args)
        except ZltError as e:
            return error_page(request, e)
        except Exception as e:  # a page answers a page, as the API answers JSON (zlt/serve/http_errors.py)
            sys.stderr.write(f"zlt serve: internal error on {request.url.path}: {type(e).__name__}: {e}\n")
            return _page(request, "error.html", cfg, 500, title="500 internal_error",
                         message="the server failed on this page", hint="see the server's log; report it if it repeats")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/jobs", status_code=303)

    @ui.get("/ui")
    @ui.get("/ui/")
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/jobs", status_code=303)

    @ui.get("/ui/static/{name}")
    def static(name: str) -> Response:
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "max-age=300"})

    @ui.get("/ui/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        if auth.refusal("GET", request.headers, request.cookies, cfg.token) is None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return _page(request, "login.html", cfg, next=_safe_next(next))

    @ui.post("/ui/login")
    async def login(request: Request) -> Response:
        async with request.form(max_files=0, max_fields=4) as form:
            given, nxt = form.get("token"), form.get("next")
        if not auth.token_matches(given if isinstance(given, str) else None, cfg.token):
            return _page(request, "login.html", cfg, 401, next=_safe_next(nxt if isinstance(nxt, str) else None),
                         error="wrong token: it is in <ZLT_HOME>/serve/token on the server")
        resp = RedirectResponse(_safe_next(nxt if isinstance(nxt, str) else None), status_code=303)
        resp.set_cookie(auth.SESSION_COOKIE, auth.new_session(cfg.token), max_age=auth.SESSION_MAX_AGE_S,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
        return resp

    @ui.post("/ui/logout")
    async def logout(request: Request) -> Response:
        await actor(request)
        resp = RedirectResponse("/ui/login", status_code=303)
        resp.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    @ui.get("/ui/jobs")
    async def jobs_page(request: Request, state: str | None = None, kind: str | None = None,
                        rows: bool = False) -> Response:
        reader(request)
        data = await guarded(request, views.jobs_view, cfg.home, state, kind)
        if isinstance(data, Response):
            return data
        return _page(request, "job_rows.html" if rows else "jobs.html", cfg, **data)

    @ui.get("/ui/jobs/{job_id}")
    async def job_page(request: Request, job_id: str) -> Response:
        reader(request)
        data = await guarded(request, views.job_view, cfg.home, job_id)
        return data if isinstance(data, Response) else _page(request, "job.html", cfg, **data)

    @ui.get("/ui/jobs/{job_id}/chart")
    async def job_chart(request: Request, job_id: str) -> Response:
        reader(request)
        data = await guarded(request, views.job_view, cfg.home, job_id)
        return data if isinstance(data, Response) else _page(request, "chart.html", cfg, chart=data["chart"])

    @ui.get("/ui/jobs/{job_id}/files/{rel:path}")
    async def job_file(request: Request, job_id: str, rel: str) -> Response:
        reader(request)
        path = await guarded(request, views.job_file, cfg.home, job_id, rel)
        return path if isinstance(path, Response) else FileResponse(path)

    @ui.post("/ui/jobs/{job_id}/cancel")
    async def cancel(request: Request, job_id: str) -> Response:
        await actor(request)
        st = await guarded(request, tools.cancel, cfg.home, job_id)  # what POST /v1/jobs/{id}/cancel calls
        return st if isinstance(st, Response) else _back(f"/ui/jobs/{quote(st['job_id'])}", "cancel requested")

    @ui.post("/ui/jobs/{job_id}/retry")
    async def retry(request: Request, job_id: str) -> Response:
        await actor(request)
        st = await guarded(request, tools.retry, cfg.home, job_id)  # what POST /v1/jobs/{id}/retry calls
        return st if isinstance(st, Response) else _back(f"/ui/jobs/{quote(st['job_id'])}", "queued again")

    @ui.get("/ui/artifacts")
    async def artifacts_page(request: Request) -> Response:
        reader(request)
        data = await guarded(request, views.artifacts_view, cfg.home)
        return data if isinstance(data, Response) else _page(request, "artifacts.html", cfg, **data)

    @ui.get("/ui/artifacts/{ref}")
    async def artifact_page(request: Request, ref: str) -> Response:
        reader(request)
        data = await guarded(request, views.artifact_view, cfg.home, ref)
        return data if isinstance(data, Response) else _page(request, "artifact.html", cfg, **data)

    @ui.post("/ui/artifacts/{ref}/promote")
    async def promote(request: Request, ref: str) -> Response:
        await actor(request)
        out = await guarded(request, versions_api.promote_version, cfg.home, ref)  # = POST /v1/artifacts/{ref}/promote
        return out if isinstance(out, Response) else _back(
            f"/ui/artifacts/{quote(out['current'])}", f"{out['current']} is now the current version of {out['style']}")

    @ui.post("/ui/styles/{style}/rollback")
    async def rollback(request: Request, style: str) -> Response:
        await actor(request)
        out = await guarded(request, versions_api.rollback_style, cfg.home, style)  # = POST /v1/styles/{style}/rollback
        return out if isinstance(out, Response) else _back(
            "/ui/artifacts", f"{out['style']} rolled back to {out['current']}")

    @ui.post("/ui/artifacts/{ref}/generate")
    async def generate(request: Request, ref: str) -> Response:
        await actor(request)
        async with request.form(max_files=0, max_fields=16) as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}
        try:
            data = generate_request(ref, fields)
        except ZltError as e:
            return error_page(request, e)
        # what POST /v1/generations calls, with the server's fences
        st = await guarded(request, generations.submit, cfg.home, "generate", data, 0, cfg.fence().roots())
        return st if isinstance(st, Response) else _back(f"/ui/jobs/{quote(st['job_id'])}", "generation queued")

    app.include_router(ui)


def generate_request(ref: str, fields: dict[str, str]) -> dict[str, Any]:
    """The generate form as the body of POST /v1/generations (its model, GenerateParams, checks the values)."""
    prompts = [p.strip() for p in (fields.get("prompt") or "").splitlines() if p.strip()]
    if not prompts:
        raise BadInputError("generate.prompts: give at least one prompt (one per line)")
    data: dict[str, Any] = {"loras": [{"artifact": ref}], "prompts": prompts}
    for key in ("count", "steps", "seed", "width", "height"):
        text = (fields.get(key) or "").strip()
        if text:
            if not text.isdigit():
                raise BadInputError(f"generate.{key}: {text!r} is not a whole number")
            data[key] = int(text)
    scale = (fields.get("scale") or "").strip()
    if scale:
        try:
            data["loras"][0]["scale"] = float(scale)
        except ValueError:
            raise BadInputError(f"generate.scale: {scale!r} is not a number") from None
    return data
