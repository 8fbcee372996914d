"""Byte chunks from a pipe -> logical lines.

Trainers redraw tqdm bars with `\\r` and print everything else with `\\n`; both end a logical line.
A chunk may end in the middle of a line or of a UTF-8 character, so the splitter keeps the tail
and an incremental decoder. A line that never ends (a bar with no newline, a binary blob) is cut
at `max_line` characters so memory stays bounded.
"""

from __future__ import annotations

import codecs
import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB012]")
DEFAULT_MAX_LINE = 64 * 1024


def strip_ansi(line: str) -> str:
    """Drop terminal escape codes (colours, cursor moves) some loggers emit even into pipes."""
    return _ANSI.sub("", line) if "\x1b" in line else line


class LineSplitter:
    """Feed bytes, get complete lines (without terminators, never empty); `flush()` the rest at EOF."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""
        self.max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        text = self._tail + self._decoder.decode(data)
        if "\r" in text:
            text = text.replace("\r", "\n")
        parts = text.split("\n")
        self._tail = parts.pop()
        if len(self._tail) > self.max_line:
            parts.append(self._tail)
            self._tail = ""
        return [strip_ansi(p) for p in parts if p]

    def flush(self) -> list[str]:
        text = self._tail + self._decoder.decode(b"", final=True)
        self._tail = ""
        return [strip_ansi(p) for p in text.replace("\r", "\n").split("\n") if p]


def split_text(text: str) -> list[str]:
    """All logical lines of a whole log text (tests and re-parsing a saved train.log)."""
    return [strip_ansi(p) for p in text.replace("\r", "\n").split("\n") if p]
