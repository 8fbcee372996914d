"""Follow a growing file (`logs -f`): new bytes as they land, across the runner's log rotation on a retry.

Reading is incremental (a byte offset), never re-reading the whole file; it stops once `done()` said
the job ended and a last read found nothing new.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def follow_bytes(path: Path, done: Callable[[], bool], *, poll_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> Iterator[bytes]:
    fh: IO[bytes] | None = None
    ino = None
    try:
        while True:
            finished = done()  # asked before reading, so bytes written just before the end are not lost
            got = False
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and (fh is None or st.st_ino != ino or st.st_size < fh.tell()):
                if fh is not None:
                    rest = fh.read()  # the rotated-away file may still hold its last lines
                    if rest:
                        yield rest
                    fh.close()
                fh = open(path, "rb")
                ino = st.st_ino
            if fh is not None:
                chunk = fh.read()
                if chunk:
                    got = True
                    yield chunk
            if finished and not got:
                return
            if not got:
                sleep(poll_s)
    finally:
        if fh is not None:
            fh.close()


def follow_events(path: Path, done: Callable[[], bool], *, after_seq: int = 0, poll_s: float = 0.5,
                  sleep: Callable[[float], None] = time.sleep) -> Iterator[dict[str, Any]]:
    """Events of an events.jsonl as they are appended; a line is parsed once it is complete."""
    buf = b""
    for chunk in follow_bytes(path, done, poll_s=poll_s, sleep=sleep):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("seq", 0) > after_seq:
                after_seq = ev["seq"]
                yield ev
