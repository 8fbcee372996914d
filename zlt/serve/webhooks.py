"""Webhooks: a job's `job.callback_url` receives its state changes, checkpoints and end as signed POSTs.

- What is sent comes from the job's own records: every state change in `job_history` and every `checkpoint`
  and `finished` event in `job_events`. Each delivery has a stable `event_id` (`<job>:state:<n>` for the n-th
  history entry, `<job>:seq:<seq>` for an event), sent as `X-Zlt-Event-Id`, so a receiver drops repeats.
- The body is signed: `X-Zlt-Signature: sha256=<hex HMAC-SHA256 of the raw body with the webhook secret>`.
- A failed POST (network error, non-2xx) is retried with exponential backoff; a retry sends the same bytes.
- Subscriptions and their pending deliveries live in `<ZLT_HOME>/serve/webhooks/<job_id>.json` (written
  atomically before any POST), so a restarted server carries on where it stopped.
- Where a POST may go is zlt/core/callback_url.py's rule (public addresses, plus the operator's allow-list): the
  gate applied it to the URL's text at submit; here it is applied to every address the host resolves to, and the
  connection goes to the address that was checked (no DNS rebind between check and connect).
- One job's trouble is its own: a refused URL, a POST that raises, a job whose records cannot be read is recorded
  for that job and retried or given up; the other jobs' deliveries and later passes go on.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from zlt import __version__
from zlt.core.callback_url import (
    NOTHING_ALLOWED,
    CallbackAllow,
    CallbackURL,
    check_address,
    parse_callback_url,
)
from zlt.core.errors import BadInputError, ZltError
from zlt.core.fsutil import atomic_write_json
from zlt.jobs import job_events, job_history, job_status

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


def backoff_s(attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Wait before attempt `attempts + 1`: 1, 2, 4, ... seconds, at most `cap`."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


@dataclass
class PostResult:
    ok: bool
    detail: str
    permanent: bool = False  # the URL or its address is refused: retrying cannot help


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the resolver's order), as text."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(target: CallbackURL, allow: CallbackAllow, resolver: Resolver = resolve) -> list[str]:
    """The addresses a delivery may connect to: every one the host resolves to must pass the rule (one refused
    address refuses the URL: a name that also points inside is not a receiver outside). BadInputError if not."""
    if target.address is not None:
        check_address(target.host, target.address, allow)
        return [str(target.address)]
    addresses = resolver(target.host, target.port)
    if not addresses:
        raise OSError(f"{target.host} resolves to no address")
    for text in addresses:
        check_address(target.host, ipaddress.ip_address(text.split("%", 1)[0]), allow)
    return addresses


def _pinned_connection(target: CallbackURL, addresses: list[str], timeout_s: float) -> http.client.HTTPConnection:
    """A connection to `target` that connects only to the checked `addresses` (a DNS answer that changes between
    the check and the connect, a rebind, is never used), while Host, TLS SNI and the certificate check still use
    the URL's host name."""
    cls = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    conn = cls(target.host, target.port, timeout=timeout_s)

    def connect(address: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
        last: OSError = OSError(f"no address to connect to for {target.host}")
        for ip in addresses:
            try:
                return socket.create_connection((ip, address[1]), timeout, source_address)
            except OSError as e:
                last = e
        raise last

    conn._create_connection = connect  # type: ignore[attr-defined]  # what HTTP(S)Connection.connect() calls
    return conn


def post_json(url: str, body: bytes, headers: dict[str, str], timeout_s: float = 5.0, *,
              allow: CallbackAllow = NOTHING_ALLOWED, resolver: Resolver = resolve) -> PostResult:
    """One POST to a callback URL, after the URL rule on its text and on every address its host resolves to.
    Redirects are not followed (a redirected POST would lose its body or its meaning, or lead inside); proxies
    from the environment are not used (the proxy would resolve the name, past the address check). Never raises."""
    try:
        target = parse_callback_url(url)
        addresses = checked_addresses(target, allow, resolver)
    except BadInputError as e:
        return PostResult(False, e.message, permanent=True)
    except (OSError, ValueError, UnicodeError) as e:  # the name does not resolve (now): retried
        return PostResult(False, f"{type(e).__name__}: {e}")
    conn = _pinned_connection(target, addresses, timeout_s)
    try:
        conn.request("POST", target.target, body=body, headers=headers)
        with conn.getresponse() as resp:
            return PostResult(200 <= resp.status < 300, f"HTTP {resp.status}")
    except Exception as e:  # any failure of this one POST (http.client raises more than OSError) is this job's
        return PostResult(False, f"{type(e).__name__}: {e}")
    finally:
        conn.close()


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
        """Start (or, after a retry, resume) sending this job's changes to `url`. The gate judged the URL against
        the server's rule and allow-list; here only its syntax is checked again, the addresses when delivering."""
        with self._lock:
            sub = self.load(job_id) or {"job_id": job_id, "history_seen": 0, "after_seq": 0, "pending": [],
                                        "delivered": 0, "failed": []}
            sub.update(url=parse_callback_url(url).url, done=False, generation=sub.get("generation", 0) + 1)
            atomic_write_json(self.path(job_id), sub)

    def load(self, job_id: str) -> dict[str, Any] | None:
        try:
            sub = json.loads(self.path(job_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        # A file that is not one of ours (hand-edited, truncated) is skipped, not a failure of every pass.
        return {**sub, "job_id": job_id} if isinstance(sub, dict) and isinstance(sub.get("pending", []), list) else None

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


@dataclass
class _Trouble:
    """A job whose pass keeps failing (its store rows, its subscription file): retried with backoff, then dropped."""
    count: int
    retry_at: float
    generation: Any


class WebhookDispatcher:
    """Polls subscribed jobs and delivers their webhooks; `tick()` is one pass (tests call it directly).

    Whatever goes wrong for one job (a refused or malformed URL, a receiver that hangs up, an unreadable record) is
    recorded for that job and retried with backoff, then given up; it never ends the pass for the other jobs, and
    it is logged once, not once a pass."""
    def __init__(
        self, home: Path, secret: str, *, poll_s: float = 1.0, max_attempts: int = 8, timeout_s: float = 5.0,
        post: Callable[[str, bytes, dict[str, str], float], PostResult] | None = None,
        clock: Callable[[], float] = time.time, backoff: Callable[[int], float] = backoff_s,
        allow: CallbackAllow | Iterable[str] | None = None, log: Callable[[str], Any] | None = None,
    ) -> None:
        self.home = Path(home)
        self.secret = secret
        self.subs = Subscriptions(home)
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.allow = CallbackAllow.parse(allow)  # the operator's --callback-allow, also judged at delivery
        self.post = post or functools.partial(post_json, allow=self.allow)
        self.clock = clock
        self.backoff = backoff
        self.log = log or (lambda line: sys.stderr.write(line + "\n"))
        self._trouble: dict[str, _Trouble] = {}
        self._last_logged: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int:
        """Collect new changes of every active subscription and attempt due deliveries. Returns POSTs made."""
        posts = 0
        for sub in self.subs.active():
            job_id = sub["job_id"]
            trouble = self._trouble.get(job_id)
            if trouble is not None and trouble.generation == sub.get("generation") and trouble.retry_at > self.clock():
                continue
            try:
                posts += self._pass(sub)
                self._trouble.pop(job_id, None)
            except Exception as e:  # this job's problem: record it, carry on with the others
                self._job_failed(sub, e)
        return posts

    def _pass(self, sub: dict[str, Any]) -> int:
        job_id = sub["job_id"]
        try:
            status = job_status(self.home, job_id)
            history = job_history(self.home, job_id)
            events = job_events(self.home, job_id, sub.get("after_seq", 0))
        except ZltError as e:  # the job vanished from the store: nothing more will happen to it
            sub.update(done=True, gone=e.message)
            self.subs.save(sub)
            return 0
        now = self.clock()
        fresh = new_deliveries(sub, history, events, status, now)
        sub["pending"] = sub.get("pending", []) + fresh
        self.subs.save(sub)  # recorded before any POST: a crash re-sends (same event_id), never skips
        posts = self._attempt_due(sub, now)
        if status["state"] in TERMINAL_STATES and not sub["pending"] and not events and not fresh:
            sub["done"] = True
        self.subs.save(sub)
        return posts

    def _job_failed(self, sub: dict[str, Any], err: Exception) -> None:
        job_id, now = sub["job_id"], self.clock()
        previous = self._trouble.get(job_id)
        count = (previous.count if previous and previous.generation == sub.get("generation") else 0) + 1
        detail = f"{type(err).__name__}: {err}"
        self._trouble[job_id] = _Trouble(count, now + self.backoff(count), sub.get("generation"))
        if count == 1:
            self.log(f"zlt serve: webhooks of job {job_id} failed ({detail}); retrying with backoff")
        if count < self.max_attempts:
            return
        self._trouble[job_id].retry_at = float("inf")  # given up: not again in this process, even if the save fails
        self.log(f"zlt serve: webhooks of job {job_id} given up after {count} failed passes ({detail})")
        try:
            self.subs.save({**sub, "done": True, "gone": detail})
        except Exception:  # the store is what failed; the in-memory mark above keeps it given up
            pass

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
            try:
                result = self.post(sub["url"], body, headers, self.timeout_s)
            except Exception as e:  # a post that raises (InvalidURL is no ValueError) fails this delivery only
                result = PostResult(False, f"{type(e).__name__}: {e}")
            posts += 1
            if result.ok:
                sub["delivered"] = sub.get("delivered", 0) + 1
                continue
            d["attempts"] = self.max_attempts if result.permanent else d["attempts"] + 1
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
                self._last_logged = None
            except Exception as e:  # the subscriptions folder itself is unreadable: say so once, keep polling
                line = f"zlt serve: webhook pass failed: {type(e).__name__}: {e}"
                if line != self._last_logged:
                    self.log(line)
                    self._last_logged = line
            self._stop.wait(self.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="zlt-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
