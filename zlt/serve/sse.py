"""Server-Sent Events over a job's event stream (`events.jsonl` via `zlt.jobs.job_events`).

Each event goes out as `id: <seq>` / `event: <type>` / `data: <the flat event JSON>`, so a client that
reconnects with `Last-Event-ID: <seq>` gets exactly the events after it: nothing lost, nothing twice.
The stream ends after a `finished` event once the job is in a final state (an automatic retry appends a
new run after a `finished`, so the event alone does not end it), or when the client goes away.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zlt.core.errors import BadInputError

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
MAX_SEQ = 2**63 - 1
MAX_SEQ_DIGITS = len(str(MAX_SEQ))


def format_event(event: dict[str, Any]) -> str:
    """One SSE frame for a stamped event dict."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    kind = str(event.get("type", "message")).replace("\n", " ")
    return f"id: {int(event['seq'])}\nevent: {kind}\ndata: {data}\n\n"


def comment(text: str) -> str:
    """A comment line: keeps proxies and idle timeouts from closing a quiet stream."""
    return f": {text}\n\n"


def resume_point(last_event_id: str | None, after: int | None) -> int:
    """The seq to continue after: the `Last-Event-ID` header wins over the `after` query parameter.

    A header that is not a number is ignored (browsers send back what we sent, always a seq). One that no seq we
    sent could be (not ASCII: '²' is a digit to `str.isdigit` and an error to `int`; digits beyond 64 bits) is
    refused (400), not parsed into a crash.
    """
    if last_event_id is not None:
        text = last_event_id.strip()
        if not text.isascii() or (text.isdigit() and (len(text) > MAX_SEQ_DIGITS or int(text) > MAX_SEQ)):
            raise BadInputError(f"Last-Event-ID {text[:24]!r}{'...' if len(text) > 24 else ''}: not an event seq",
                                hint="send back the `id` of the last event received (a number below 2^63)")
        if text.isdigit():
            return int(text)
    return max(0, after or 0)


@dataclass
class StreamSettings:
    poll_s: float = 0.25  # how often events.jsonl is re-read while the job is quiet
    state_every_s: float = 1.0  # how often the job state is checked while nothing arrives
    heartbeat_s: float = 15.0
    retry_ms: int = 2000  # what EventSource clients wait before reconnecting


async def event_frames(
    read_events: Callable[[int], Awaitable[list[dict[str, Any]]]],
    read_state: Callable[[], Awaitable[str]],
    after: int,
    *,
    follow: bool = True,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    settings: StreamSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
) -> AsyncIterator[str]:
    """SSE frames for the events after `after`; with `follow`, keep going until the job is done."""
    import anyio

    s = settings or StreamSettings()
    sleep = sleep or anyio.sleep
    yield f"retry: {s.retry_ms}\n\n"
    last_beat = clock()
    last_state_check = last_beat - s.state_every_s  # a finished job with nothing to replay closes at once
    while True:
        events = await read_events(after)
        for ev in events:
            yield format_event(ev)
            after = max(after, int(ev.get("seq", after)))
        if not follow:
            return
        now = clock()
        quiet = not events
        if events:
            last_beat = now
        ended = bool(events) and events[-1].get("type") == "finished"
        if quiet and now - last_state_check >= s.state_every_s:
            last_state_check = now
            ended = True  # a final state with nothing new to read: the job ended (maybe a cancel while queued)
        if ended and await read_state() in TERMINAL_STATES:
            # Re-read once: an event written just before the state changed must not be lost.
            for ev in await read_events(after):
                yield format_event(ev)
            return
        if quiet and now - last_beat >= s.heartbeat_s:
            last_beat = now
            yield comment("keepalive")
        if disconnected is not None and await disconnected():
            return
        await sleep(s.poll_s)
