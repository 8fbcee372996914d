"""The Jinja environment for templates/: strict undefined, no autoescape, data-quoting filters."""

from __future__ import annotations

import functools

from zlt.core.paths import data_dir
from zlt.core.quoting import toml_value, yaml_value


@functools.lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["y"] = yaml_value
    env.filters["t"] = toml_value
    return env


def render_template(template: str, **values) -> str:
    return environment().get_template(template).render(**values)
