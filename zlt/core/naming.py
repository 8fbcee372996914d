"""Artifact folder names from `output.naming.pattern`, sanitised so that no value can escape the registry.

The pattern is parsed, never handed to `str.format`: only the listed placeholders are allowed, with no attribute
or index access (`{job_id.__class__}`) and no conversions. Integer placeholders may carry a width (`{version:03d}`).

A literal `v0` standing alone between separators (`_`, `-`, `.` or the ends) in a pattern without `{version}` reads
as "the version goes here": the user's `{job_id}_{style_name}_v0` names v0, v1, v2, ... of one style. Only the last
such `v0` counts; folders named before this rule keep their names (the index numbers them, see versions.py).
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from dataclasses import dataclass

from zlt.core.errors import BadInputError

FIELD = "output.naming.pattern"
STRING_FIELDS = ("job_id", "style_name", "preset", "date")
INT_FIELDS = ("rank", "steps", "version")
PLACEHOLDERS = STRING_FIELDS + INT_FIELDS
MAX_NAME = 120
_INT_SPEC = re.compile(r"^0?[1-9]?d?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_LITERAL_V0 = re.compile(r"(?<![^_.-])v0(?![^_.-])")


@dataclass(frozen=True)
class NameValues:
    job_id: str
    style_name: str
    preset: str
    rank: int
    steps: int
    date: str  # YYYYMMDD

    def as_dict(self, version: int) -> dict[str, object]:
        return {
            "job_id": self.job_id, "style_name": self.style_name, "preset": self.preset, "rank": self.rank,
            "steps": self.steps, "date": self.date, "version": version,
        }


def parse_pattern(pattern: str) -> list[tuple[str, str | None, str]]:
    """(literal, field or None, format spec) pieces; BadInputError naming the field on anything else."""
    if not pattern or not pattern.strip():
        raise BadInputError(f"{FIELD}: empty", hint="e.g. '{job_id}_{style_name}_v0'")
    try:
        pieces = list(string.Formatter().parse(pattern))
    except ValueError as e:
        raise BadInputError(f"{FIELD}: {pattern!r}: {e}", hint="write braces as {{ and }}, placeholders as {job_id}") from None
    out: list[tuple[str, str | None, str]] = []
    for literal, name, spec, conversion in pieces:
        if name is None:
            out.append((literal, None, ""))
            continue
        if name not in PLACEHOLDERS:
            raise BadInputError(
                f"{FIELD}: unknown placeholder {{{name}}} in {pattern!r}",
                hint="use " + " ".join("{" + p + "}" for p in PLACEHOLDERS),
            )
        if conversion:
            raise BadInputError(f"{FIELD}: conversion '!{conversion}' is not allowed in {{{name}}}")
        spec = spec or ""
        if spec and (name not in INT_FIELDS or not _INT_SPEC.match(spec)):
            raise BadInputError(
                f"{FIELD}: format '{spec}' is not allowed in {{{name}}}", hint="only widths on numbers, e.g. {version:03d}"
            )
        out.append((literal, name, spec))
    return out


def _unparse(pieces: list[tuple[str, str | None, str]]) -> str:
    out = []
    for literal, name, spec in pieces:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            out.append("{" + name + (":" + spec if spec else "") + "}")
    return "".join(out)


def effective_pattern(pattern: str) -> str:
    """The pattern with the user's literal `v0` read as `v{version}` (see the module docstring)."""
    pieces = parse_pattern(pattern)
    if any(name == "version" for _, name, _ in pieces):
        return pattern
    for i in range(len(pieces) - 1, -1, -1):
        literal, name, spec = pieces[i]
        # A separator may sit on the other side of a placeholder: judge v0 against its neighbours in the name.
        before = "_" if i == 0 else ("x" if pieces[i - 1][1] is not None or pieces[i - 1][0] else "_")
        after = "_" if i == len(pieces) - 1 and name is None else "x"
        hits = list(_LITERAL_V0.finditer(before + literal + after))
        hits = [m for m in hits if 1 <= m.start() and m.end() <= len(literal) + 1]
        if hits:
            m = hits[-1]
            start, end = m.start() - 1, m.end() - 1
            pieces[i:i + 1] = [(literal[:start] + "v", "version", ""), (literal[end:], name, spec)]
            return _unparse(pieces)
    return pattern


def uses_version(pattern: str) -> bool:
    return any(name == "version" for _, name, _ in parse_pattern(effective_pattern(pattern)))


def sanitize_name(raw: str) -> str:
    """A single safe path component: [A-Za-z0-9._-], no leading dot, never '.'/'..', at most MAX_NAME chars."""
    text = unicodedata.normalize("NFKC", raw)
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"_{2,}", "_", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = text.strip("._- ")
    if not text:
        text = "artifact"
    if len(text) > MAX_NAME:
        # Keep names distinct after truncation: the tail is a hash of the whole name.
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        text = text[: MAX_NAME - 11].rstrip("._-") + "_" + digest
    return text


def render_name(pattern: str, values: NameValues, version: int = 0) -> str:
    """The sanitised folder name for one version."""
    data = values.as_dict(version)
    parts: list[str] = []
    for literal, name, spec in parse_pattern(effective_pattern(pattern)):
        parts.append(literal)
        if name is not None:
            value = data[name]
            parts.append(format(value, spec) if spec else str(value))
    return sanitize_name("".join(parts))
