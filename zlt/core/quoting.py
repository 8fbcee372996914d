"""Values reach templates as data: these filters emit YAML/TOML literals that parse back to exactly the value,
whatever colons, quotes, '#', '{{' or newlines it holds."""

from __future__ import annotations

import math
from typing import Any


def yaml_value(value: Any) -> str:
    """One-line YAML flow literal for a scalar, list or mapping."""
    import yaml

    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_value(str(k))}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        out = yaml.safe_dump(value, default_style='"', width=math.inf, allow_unicode=True)
    else:
        out = yaml.safe_dump(value, default_flow_style=True, width=math.inf)
    out = out.strip()
    if out.endswith("\n..."):
        out = out[: -len("\n...")]
    elif out.endswith("..."):
        out = out[:-3].strip()
    return out


def toml_value(value: Any) -> str:
    """A TOML literal (tomli-w does the escaping); None has no TOML form and must be left out by the template."""
    import tomli_w

    if value is None:
        raise ValueError("TOML has no null; leave the key out")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = tomli_w.dumps({"v": value})
    return text.split("=", 1)[1].strip()
