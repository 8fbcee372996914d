"""ZltError -> HTTP status and one JSON error shape (`ErrorBody`), and the request-body size cap.

The HTTP layer is the one place besides the CLI that turns library errors into codes:
SpecError 422, NotFoundError 404, an illegal state change 409, a refused upload 400/413, other bad input 422
when it names a field (else 400), EnvNotReadyError 503, anything unexpected 500 (no traceback to the client).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError, EnvNotReadyError, FieldError, NotFoundError, SpecError, ZltError
from zlt.jobs.states import IllegalTransition
from zlt.serve.api_words import api_error
from zlt.serve.jsonbody import FINITE
from zlt.serve.uploads import UploadTooLarge

_FIELD_MESSAGE = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+): (.+)$", re.S)


def as_field_error(err: BadInputError) -> FieldError | None:
    """`dataset.path: no images in X` -> FieldError('dataset.path', 'no images in X'); None if no field is named."""
    m = _FIELD_MESSAGE.match(err.message)
    return FieldError(m.group(1), m.group(2), err.hint) if m else None


def error_body(kind: str, message: str, hint: str = "", errors: list[FieldError] | None = None) -> dict[str, Any]:
    errors = errors or []
    return {
        "ok": False, "error": kind, "message": message, "hint": hint,
        "detail": [f"{e.path}: {e.message}" if e.path else e.message for e in errors],
        "errors": [e.to_dict() for e in errors],
    }


def status_and_body(err: ZltError) -> tuple[int, dict[str, Any]]:
    if isinstance(err, SpecError):
        return 422, error_body(err.kind, err.message, err.hint, err.errors)
    if isinstance(err, NotFoundError):
        return 404, error_body(err.kind, err.message, err.hint)
    if isinstance(err, IllegalTransition):
        return 409, error_body(err.kind, err.message, err.hint)
    status = getattr(err, "status", None)
    if isinstance(status, int):
        return status, error_body(err.kind, err.message, err.hint)
    if isinstance(err, BadInputError):
        fe = as_field_error(err)
        if fe is not None:
            return 422, error_body("invalid_spec", f"1 problem: {err.message}", err.hint, [fe])
        return 400, error_body(err.kind, err.message, err.hint)
    if isinstance(err, EnvNotReadyError):
        return 503, error_body(err.kind, err.message, err.hint)
    return 500, error_body(err.kind, err.message, err.hint)


def _validation_message(err: dict[str, Any]) -> str:
    """FastAPI's message for one parameter; NaN or Infinity (`?vram_gb=nan` parses as a float) is named for what it
    is, not by the bound it happens to fail."""
    value = err.get("input")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return FINITE
    return str(err.get("msg", "invalid"))


def _loc_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """FastAPI's ('query', 'limit') -> 'query.limit'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def allowed_methods(app: Any, scope: dict[str, Any]) -> list[str]:
    """Every method any route serves at this path (Starlette's own 405 names only the first route's)."""
    from starlette.routing import Match

    def walk(routes: list[Any]) -> set[str]:
        found: set[str] = set()
        for route in routes:
            # FastAPI wraps an included router (no prefix here) in an object holding the original.
            inner = getattr(route, "routes", None) or getattr(getattr(route, "original_router", None), "routes", None)
            if inner:
                found |= walk(inner)
            elif getattr(route, "methods", None) and route.matches({**scope, "method": "GET"})[0] != Match.NONE:
                found |= set(route.methods)
        return found

    return sorted(walk(app.router.routes))


def install(app: Any, home: Path | None = None) -> None:
    """Register the exception handlers on a FastAPI app; messages name API fields, not CLI flags, and not the
    server's `home` (zlt/serve/api_words.py)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    async def on_zlt(_request: Any, exc: ZltError) -> JSONResponse:
        status, body = status_and_body(exc)
        return JSONResponse(api_error(body, home), status_code=status)

    async def on_validation(_request: Any, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(_loc_path(e.get("loc", ())), _validation_message(e)) for e in exc.errors()]
        n = len(errors)
        return JSONResponse(error_body("bad_request", f"{n} problem{'s' if n != 1 else ''} in the request", "",
                                       errors), status_code=422)

    async def on_http(request: Any, exc: HTTPException) -> JSONResponse:
        kind = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return JSONResponse(error_body(kind, str(exc.detail)), status_code=exc.status_code, headers=headers or None)

    async def on_unexpected(_request: Any, exc: Exception) -> JSONResponse:
        sys.stderr.write(f"zlt serve: internal error: {type(exc).__name__}: {exc}\n")
        return JSONResponse(error_body("internal_error", "the server failed on this request",
                                       "see the server's log; report it if it repeats"), status_code=500)

    app.add_exception_handler(ZltError, on_zlt)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


class BodyLimit:
    """ASGI middleware: refuse request bodies over the cap (multipart: the upload cap; anything else: the JSON cap).

    A declared Content-Length over the cap is answered 413 before reading; a chunked body is counted while it
    is read and the read fails with UploadTooLarge (a ZltError, so the handlers above answer 413).
    """
    def __init__(self, app: Any, max_upload_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        cap = self.max_upload_bytes if ctype.startswith("multipart/") else self.max_json_bytes
        declared = headers.get(b"content-length", b"").decode("latin-1")
        too_large = UploadTooLarge(f"request body is larger than {cap} bytes",
                                   hint="upload a smaller zip, or ask the operator to raise --max-upload-mb")
        if declared.isdigit() and int(declared) > cap:
            status, body = status_and_body(too_large)
            data = json.dumps(body).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": data})
            return
        received = 0

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise too_large
            return message

        await self.app(scope, counted_receive, send)


class RefuseNul:
    """ASGI middleware: a request whose path holds a NUL byte (`/files/lora.safetensors%00.txt`) is answered 400
    before any route sees it: no file name, id or path a route reads can hold one, whatever the route does with it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and ("\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")):
            body = json.dumps(error_body("bad_request", "the request path or query holds a NUL byte",
                                         "no name or path zlt serves contains one")).encode()
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
