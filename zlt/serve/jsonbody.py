"""Parse a client's JSON body into plain data, refusing shapes no spec has as bad input (400), never a crash.

A spec is at most a few levels deep and its integers fit in 64 bits; 100k nested brackets (RecursionError in
the parser) or a 5000-digit number (Python's int-digit limit, a ValueError) are a hostile or broken client.
Python's json reads `NaN` and `Infinity`, which no field accepts: each is refused naming its field (422), not
reported by a bound it happens to fail ("should be <= 30"). One content-type rule holds for every route that
reads a JSON body (`require_json`): JSON or no content type, else 415.
"""

from __future__ import annotations

import json
import math
from typing import Any

from zlt.core.errors import BadInputError, FieldError, SpecError
from zlt.spec.yaml_text import parse_yaml

MAX_DEPTH = 32
MAX_INT = 2**63 - 1
FINITE = "must be a finite number (NaN and Infinity are not accepted)"


class UnsupportedMedia(BadInputError):
    kind = "unsupported_media_type"
    status = 415


def is_json_type(content_type: str) -> bool:
    """application/json (any parameters, any `+json` suffix), or no content type at all (curl -d, many clients)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


def require_json(content_type: str, also: str = "") -> None:
    """UnsupportedMedia (415) unless the body is JSON; `also` names the route's other accepted form."""
    if not is_json_type(content_type):
        raise UnsupportedMedia(f"content type {content_type!r} is not accepted",
                               hint=f"send application/json{also}")


def _child_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def check_shape(data: Any, what: str = "request body") -> Any:
    """`data` unchanged, or BadInputError when it nests deeper than MAX_DEPTH or holds an int beyond 64 bits, or a
    SpecError naming each field that holds NaN or Infinity."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    non_finite: list[FieldError] = []
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise BadInputError(f"{what}: an integer has more than 64 bits", hint="send numbers a spec field accepts")
        if isinstance(value, float) and not math.isfinite(value):
            non_finite.append(FieldError(path or "body", FINITE, "send a plain number"))
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadInputError(f"{what}: nested deeper than {MAX_DEPTH} levels",
                                    hint="send the spec as a JSON object (GET /v1/schema shows its shape)")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, depth + 1, _child_path(path, k)) for k, v in items)
    if non_finite:
        raise SpecError(sorted(non_finite, key=lambda e: e.path), what)
    return data


def parse_json(raw: bytes | str, what: str = "request body") -> Any:
    """JSON text -> data; every malformed or hostile input is a BadInputError naming what is wrong."""
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise BadInputError(f"{what}: nested deeper than {MAX_DEPTH} levels",
                            hint="send the spec as a JSON object (GET /v1/schema shows its shape)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{what} is not valid JSON ({e})", hint="send the spec as a JSON object") from None
    except ValueError as e:  # int digit limit
        raise BadInputError(f"{what}: {e}", hint="send numbers a spec field accepts") from None
    return check_shape(data, what)


def parse_spec_text(value: Any, source: str) -> Any:
    """A form field holding a spec: JSON text, or YAML as `zlt submit` reads either (aliases bounded before the
    document is built: zlt/spec/yaml_text.py). Blocking work: callers run it off the event loop."""
    what = "the 'spec' form field"
    if not isinstance(value, str):
        raise SpecError([FieldError("spec", "the 'spec' form field must be text (the spec as JSON)")], source)
    try:
        json.loads(value)
    except json.JSONDecodeError:
        return check_shape(parse_yaml(value, source, "spec"), what)
    except (RecursionError, ValueError):
        pass  # parse_json names the problem
    return parse_json(value, what)
