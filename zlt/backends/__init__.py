"""The training backends: one `Backend` (zlt/backends/base.py) per trainer, one package each. Everything that
differs between trainers (render, log parsing, resume and warm start, install facts, memory levers, saved key
format, trained facts, parity table) is asked of `get(name)`; no other module compares a backend's name.

Adding a trainer: a new package beside these (its render, parse, parity and Backend subclass) and its instance in
`_ALL` below. This is the one list of names: the spec (a layer below) takes `training.backend` as any string, the gate
(zlt/flows/gate.py) checks it here, and the schema's callers pass `names()` as its choices.
"""

from __future__ import annotations

from zlt.backends.aitoolkit import AI_TOOLKIT
from zlt.backends.base import Backend
from zlt.backends.lightning import LIGHTNING
from zlt.backends.musubi import MUSUBI
from zlt.core.errors import BadInputError
from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.spec.models import JobSpec

_ALL: tuple[Backend, ...] = (AI_TOOLKIT, MUSUBI, LIGHTNING)
_BY_NAME: dict[str, Backend] = {b.name: b for b in _ALL}
FIELD = "training.backend"


def names() -> list[str]:
    """Every backend's name, in the order docs and errors list them."""
    return [b.name for b in _ALL]


def unknown_backend(name: object) -> BadInputError:
    """The one error every door gives for a backend that does not exist (CLI flag, spec field, HTTP, MCP)."""
    return BadInputError(f"{FIELD}: unknown backend {name!r}", hint=f"use one of: {', '.join(names())}")


def get(name: str) -> Backend:
    """The backend called `name`; BadInputError naming `training.backend` and the choices otherwise."""
    found = _BY_NAME.get(name) if isinstance(name, str) else None
    if found is None:
        raise unknown_backend(name)
    return found


def render_spec(spec: JobSpec, backend: str | None, profile: HardwareProfile,
                ctx: RenderContext | None = None) -> RenderResult:
    """Spec x profile -> the backend's config files and the argv of each step (default: the spec's backend)."""
    return get(backend or spec.training.backend).render(spec, profile, ctx or RenderContext())


__all__ = ["FIELD", "Backend", "get", "names", "render_spec", "unknown_backend"]
