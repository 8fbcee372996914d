"""The built-in trainer prints one event object per line on stdout (zlt's own schema); anything else
(warnings, a traceback) goes through the generic checks."""

from __future__ import annotations

import json

from zlt.core.events import Event, event_from_dict
from zlt.run.parse_common import parse_generic


def parse_lightning(line: str) -> Event | None:
    s = line.strip()
    if s.startswith("{") and s.endswith("}"):
        try:
            d = json.loads(s)
        except json.JSONDecodeError:
            return parse_generic(s)
        if isinstance(d, dict):
            return event_from_dict(d)
        return None
    return parse_generic(s)
