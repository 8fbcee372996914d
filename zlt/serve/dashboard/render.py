"""Jinja2 for the dashboard: one environment, autoescaped, templates from this package's `templates/`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape

from zlt.core.units import rate_text

TEMPLATES = Path(__file__).parent / "templates"


def num(value: Any, digits: int = 4) -> str:
    """A number for a table cell: '' for none, else `digits` significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return f"{value:.{digits}g}"


def size(n: Any) -> str:
    if not isinstance(n, int):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = num
    env.filters["size"] = size
    # the one rate rule (zlt.core.units): it/s from 1 up, s/it below; blank when unknown
    env.filters["rate"] = lambda v: rate_text(v) if isinstance(v, (int, float)) and v > 0 else ""
    env.filters["q"] = lambda s: quote(str(s), safe="")
    return env


def render(template: str, **ctx: Any) -> str:
    return environment().get_template(template).render(**ctx)
