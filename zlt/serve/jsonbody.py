"""Parse a client's JSON body into plain data, refusing shapes no spec has as bad input (400), never a crash.

A spec is at most a few levels deep and its integers fit in 64 bits; 100k nested brackets (RecursionError in
the parser) or a 5000-digit number (Python's int-digit limit, a ValueError) are a hostile or broken client.
"""

from __future__ import annotations

import json
from typing import Any

from zlt.core.errors import BadInputError

MAX_DEPTH = 32
MAX_INT = 2**63 - 1


def check_shape(data: Any, what: str = "request body") -> Any:
    """`data` unchanged, or BadInputError when it nests deeper than MAX_DEPTH or holds an int beyond 64 bits."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise BadInputError(f"{what}: an integer has more than 64 bits", hint="send numbers a spec field accepts")
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadInputError(f"{what}: nested deeper than {MAX_DEPTH} levels",
                                    hint="send the spec as a JSON object (GET /v1/schema shows its shape)")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)
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
