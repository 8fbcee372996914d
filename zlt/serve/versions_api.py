"""`POST /v1/artifacts/{ref}/promote` and `POST /v1/styles/{style}/rollback`: which version a style name resolves to,
for remote callers and the dashboard (`zlt artifacts promote | rollback` on the CLI). Both doors call the two
functions here, which call zlt.artifacts.promote (the reference resolved by zlt.artifacts.resolve)."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at runtime.
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from zlt.artifacts.promote import promote, rollback
from zlt.artifacts.resolve import resolve_id

REF = PathParam(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,255}$",
                description="Artifact id, unique id prefix, job id, or STYLE@vN (zlt.artifacts.resolve).")
STYLE = PathParam(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="The style name.")


def promote_version(home: Path, ref: str) -> dict[str, Any]:
    """Make the artifact `ref` names the current version of its style: {style, current, previous, action, seq, at}."""
    return promote(Path(home), resolve_id(Path(home), ref))


def rollback_style(home: Path, style: str) -> dict[str, Any]:
    """Move the current version of `style` back to the version before it."""
    return rollback(Path(home), style)


def routes(api: APIRouter, cfg: Any, errors: Any) -> None:
    """Add the two routes to the authenticated router (`cfg` is the server's ServeConfig)."""

    @api.post("/v1/artifacts/{ref}/promote", tags=["artifacts"], responses=errors(400, 404, 422))
    def promote_artifact(ref: str = REF) -> dict[str, Any]:
        """Make this version the one its style name resolves to (`zlt artifacts promote`)."""
        return promote_version(cfg.home, ref)

    @api.post("/v1/styles/{style}/rollback", tags=["artifacts"], responses=errors(400, 404, 422))
    def rollback_version(style: str = STYLE) -> dict[str, Any]:
        """Undo the style's last promotion: the version current before it is current again (`zlt artifacts rollback`)."""
        return rollback_style(cfg.home, style)
