"""Webhooks: a job's `job.callback_url` receives its state changes, checkpoints and end as signed POSTs.

- What is sent comes from the job's own records: every state change in `job_history` and every `checkpoint`
  and `finished` event in `job_events`. Each delivery has a stable `event_id` (`<job>:state:<n>` for the n-th
  history entry, `<job>:seq:<seq>` for an event), sent as `X-Zlt-Event-Id`, so a receiver drops repeats.
- The body is signed: `X-Zlt-Signature: sha256=<hex HMAC-SHA256 of the raw body with the webhook secret>`.
- A failed POST (network error, non-2xx) is retried with exponential backoff; a retry sends the same bytes.
- Subscriptions and their pending deliveries live in `<ZLT_HOME>/serve/webhooks/<job_id>.json` (written
  atomically before any POST), so a restarted server carries on where it stopped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt import __version__
from zlt.core.errors import BadInputError, ZltError
from zlt.core.fsutil import atomic_write_json

SIGNATURE_HEADER = "X-Zlt-Signature"
EVENT_ID_HEADER = "X-Zlt-Event-Id"
EVENT_TYPES_SENT = frozenset({"checkpoint", "finished"})  # progress would flood a receiver; state covers the rest
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


def sign(body: bytes, secret: str) -> str:
    """The signature header value for a body: `sha256=<hex>`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(body, secret), header.strip())


def check_callback_url(url: str) -> str:
    """An http(s) URL with a host, else BadInputError naming `job.callback_url`."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(f"job.callback_url: {url!r} is not an http(s) URL",
                            hint="e.g. https://agents.example.com/hooks/zlt")
    return url.strip()


def backoff_s(attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Wait before attempt `attempts + 1`: 1, 2, 4, ... seconds, at most `cap`."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


@dataclass
class PostResult:
    ok: bool
    detail: str


def post_json(url: str, body: bytes, headers: dict[str, str], timeout_s: float = 5.0) -> PostResult:
    """One POST; redirects are not followed (a redirected POST would lose its body or its meaning)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=timeout_s) as resp:
            return PostResult(200 <= resp.status < 300, f"HTTP {resp.status}")
    except urllib.error.HTTPError as e:
        return PostResult(False, f"HTTP {e.code}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        return PostResult(False, f"{type(e).__name__}: {getattr(e, 'reason', e)}")


def delivery_body(event_id: str, kind: str, job_id: str, data: dict[str, Any], ts: float) -> str:
    """The JSON a receiver gets; built once and stored, so every retry sends identical bytes."""
    return json.dumps({"event_id": event_id, "type": kind, "job_id": job_id, "ts": round(ts, 3), **data},
                      ensure_ascii=False, sort_keys=True, default=str)


def new_deliveries(sub: dict[str, Any], history: list[dict[str, Any]], events: list[dict[str, Any]],
                   status: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Deliveries for what happened since the subscription's cursors (pure; advances the cursors in `sub`)."""
    job_id = sub["job_id"]
    # (when it happened, tie-break, delivery), sent in that order; a run's `finished` event is written in the same
    # instant as the state change it causes, and belongs before it.
    out: list[tuple[float, int, dict[str, Any]]] = []
    for n in range(sub.get("history_seen", 0), len(history)):
        h = history[n]
        if h.get("from_state") == h.get("to_state"):
            continue  # a note (cancel requested, warning), not a change of state
        eid = f"{job_id}:state:{n}"
        data = {"state": h.get("to_state"), "previous_state": h.get("from_state"), "message": h.get("message"),
                "at": h.get("ts"), "job": status}
        out.append((_epoch(h.get("ts"), now), 1, {"event_id": eid,
                                                  "body": delivery_body(eid, "job.state", job_id, data, now)}))
    sub["history_seen"] = len(history)
    for ev in events:
        sub["after_seq"] = max(sub.get("after_seq", 0), int(ev.get("seq", 0)))
        if ev.get("type") not in EVENT_TYPES_SENT:
            continue
        eid = f"{job_id}:seq:{ev['seq']}"
        body = delivery_body(eid, f"job.{ev['type']}", job_id, {"event": ev, "job": status}, now)
        out.append((float(ev.get("ts") or now), 0 if ev["type"] == "finished" else 1, {"event_id": eid, "body": body}))
    out.sort(key=lambda item: (item[0], item[1]))  # stable otherwise: same instant, same kind keeps its order
    return [{**d, "attempts": 0, "next_at": now, "last_error": None} for _, _, d in out]


def _epoch(ts: Any, default: float) -> float:
    """A history timestamp (ISO 8601 from job_history, or epoch seconds) as epoch seconds."""
    if isinstance(ts, (int, float)):
        return float(ts)
    if isinstance(ts, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return default


_FILES_LOCK = threading.Lock()  # one per process: request threads subscribe while the dispatcher thread saves


class Subscriptions:
    """The subscription files under `<ZLT_HOME>/serve/webhooks/`."""

    def __init__(self, home: Path) -> None:
        self.dir = Path(home) / "serve" / "webhooks"
        self._lock = _FILES_LOCK

    def path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.json"

    def subscribe(self, job_id: str, url: str) -> None:
        """Start (or, after a retry, resume) sending this job's changes to `url`."""
        with self._lock:
            sub = self.load(job_id) or {"job_id": job_id, "history_seen": 0, "after_seq": 0, "pending": [],
                                        "delivered": 0, "failed": []}
            sub.update(url=check_callback_url(url), done=False, generation=sub.get("generation", 0) + 1)
            atomic_write_json(self.path(job_id), sub)

    def load(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(job_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def active(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        subs = (self.load(p.stem) for p in sorted(self.dir.glob("*.json")))
        return [s for s in subs if s and not s.get("done")]

    def save(self, sub: dict[str, Any]) -> None:
        with self._lock:
            current = self.load(sub["job_id"])
            if current and current.get("generation") != sub.get("generation"):
                # Re-subscribed (a retry) while this pass ran: keep it active, at its new URL.
                sub.update(done=False, url=current["url"], generation=current.get("generation"))
            atomic_write_json(self.path(sub["job_id"]), sub)


class WebhookDispatcher:
    """Polls subscribed jobs and delivers their webhooks; `tick()` is one pass (tests call it directly)."""

    def __init__(
        self, home: Path, secret: str, *, poll_s: float = 1.0, max_attempts: int = 8, timeout_s: float = 5.0,
        post: Callable[[str, bytes, dict[str, str], float], PostResult] = post_json,
        clock: Callable[[], float] = time.time, backoff: Callable[[int], float] = backoff_s,
    ) -> None:
        self.home = Path(home)
        self.secret = secret
        self.subs = Subscriptions(home)
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.post = post
        self.clock = clock
        self.backoff = backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int:
        """Collect new changes of every active subscription and attempt due deliveries. Returns POSTs made."""
        from zlt.jobs import job_events, job_history, job_status

        posts = 0
        for sub in self.subs.active():
            job_id = sub["job_id"]
            try:
                status = job_status(self.home, job_id)
                history = job_history(self.home, job_id)
                events = job_events(self.home, job_id, sub.get("after_seq", 0))
            except ZltError as e:  # the job vanished from the store: nothing more will happen to it
                sub.update(done=True, gone=e.message)
                self.subs.save(sub)
                continue
            now = self.clock()
            fresh = new_deliveries(sub, history, events, status, now)
            sub["pending"] = sub.get("pending", []) + fresh
            self.subs.save(sub)  # recorded before any POST: a crash re-sends (same event_id), never skips
            posts += self._attempt_due(sub, now)
            if status["state"] in TERMINAL_STATES and not sub["pending"] and not events and not fresh:
                sub["done"] = True
            self.subs.save(sub)
        return posts

    def _attempt_due(self, sub: dict[str, Any], now: float) -> int:
        posts = 0
        keep = []
        blocked = False
        for d in sub["pending"]:
            # In order: a later change never overtakes an earlier one that is waiting for its retry.
            if blocked or d["next_at"] > now:
                blocked = True
                keep.append(d)
                continue
            body = d["body"].encode("utf-8")
            headers = {
                "Content-Type": "application/json", "User-Agent": f"zlt/{__version__}",
                EVENT_ID_HEADER: d["event_id"], SIGNATURE_HEADER: sign(body, self.secret),
            }
            result = self.post(sub["url"], body, headers, self.timeout_s)
            posts += 1
            if result.ok:
                sub["delivered"] = sub.get("delivered", 0) + 1
                continue
            d["attempts"] += 1
            d["last_error"] = result.detail
            if d["attempts"] >= self.max_attempts:
                sub.setdefault("failed", []).append({"event_id": d["event_id"], "error": result.detail})
                continue
            d["next_at"] = now + self.backoff(d["attempts"])
            blocked = True
            keep.append(d)
        sub["pending"] = keep
        return posts

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:  # a broken subscription file must not end webhooks for every job
                import sys

                sys.stderr.write(f"zlt serve: webhook pass failed: {type(e).__name__}: {e}\n")
            self._stop.wait(self.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="zlt-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
