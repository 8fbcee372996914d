"""Webhook signing, the pure delivery builder, and the dispatcher against a real job store and a loopback receiver."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from zlt.core.callback_url import check_callback_url
from zlt.core.errors import BadInputError
from zlt.serve.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    PostResult,
    Subscriptions,
    WebhookDispatcher,
    backoff_s,
    new_deliveries,
    sign,
    verify,
)

SECRET = "whsec-0123456789abcdef"


def test_sign_and_verify():
    body = b'{"a":1}'
    sig = sign(body, SECRET)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify(body, SECRET, sig)
    assert not verify(body + b" ", SECRET, sig)
    assert not verify(body, "other-secret-000000", sig)
    assert not verify(body, SECRET, None)


@pytest.mark.parametrize("url", ["ftp://x/y", "file:///etc/passwd", "http://", "not a url"])
def test_only_http_urls(url):
    with pytest.raises(BadInputError, match=r"^job\.callback_url: "):
        check_callback_url(url)


def test_backoff_doubles_up_to_a_cap():
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_s(30) == 300


def test_new_deliveries_skips_notes_and_progress_and_advances_cursors():
    sub = {"job_id": "j1", "history_seen": 0, "after_seq": 0}
    history = [{"from_state": None, "to_state": "queued", "message": "submitted", "ts": 1.0},
               {"from_state": "queued", "to_state": "queued", "message": "cancel requested", "ts": 2.0},
               {"from_state": "queued", "to_state": "running", "message": "", "ts": 3.0}]
    events = [{"seq": 1, "ts": 4.0, "type": "progress", "step": 1},
              {"seq": 2, "ts": 5.0, "type": "checkpoint", "path": "p", "step": 4},
              {"seq": 3, "ts": 6.0, "type": "finished", "status": "succeeded"}]
    out = new_deliveries(sub, history, events, {"state": "running"}, now=10.0)
    assert [d["event_id"] for d in out] == ["j1:state:0", "j1:state:2", "j1:seq:2", "j1:seq:3"]
    bodies = [json.loads(d["body"]) for d in out]
    assert [b["type"] for b in bodies] == ["job.state", "job.state", "job.checkpoint", "job.finished"]
    assert bodies[1]["state"] == "running" and bodies[1]["previous_state"] == "queued"
    assert (sub["history_seen"], sub["after_seq"]) == (3, 3)
    assert new_deliveries(sub, history, [], {"state": "running"}, now=11.0) == []


@pytest.fixture
def queued_job(zlt_home: Path, tmp_path: Path) -> str:
    """A real job in the store (no worker), with a webhook subscription."""
    from PIL import Image

    from zlt.jobs import submit_job
    from zlt.spec import load_spec_data

    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (i * 90, 40, 40)).save(ds / f"{i}.png")
    loaded = load_spec_data({"name": "hook", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
                             "dataset": {"path": str(ds), "resolution": 64},
                             "training": {"max_steps": 4, "warmup_steps": 0}, "output": {"save": {"every": 2}},
                             "job": {"resources": {"gpu": 0}}})
    job_id = submit_job(zlt_home, loaded, start_worker=False)["job_id"]
    Subscriptions(zlt_home).subscribe(job_id, "http://127.0.0.1:9/hook")
    return job_id


class FakePost:
    """Records every POST; fails the first `fail` of them."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[str, bytes, dict]] = []
        self.fail = fail

    def __call__(self, url: str, body: bytes, headers: dict, timeout: float) -> PostResult:
        self.calls.append((url, body, headers))
        if len(self.calls) <= self.fail:
            return PostResult(False, "HTTP 503")
        return PostResult(True, "HTTP 200")


def test_dispatcher_delivers_state_changes_signed_and_retries_with_the_same_bytes(zlt_home: Path, queued_job: str):
    from zlt.jobs import cancel_job

    now = [1000.0]
    post = FakePost(fail=1)
    d = WebhookDispatcher(zlt_home, SECRET, post=post, clock=lambda: now[0])
    d.tick()  # 'queued' state: first POST fails
    assert len(post.calls) == 1
    d.tick()  # not due yet (backoff 1 s)
    assert len(post.calls) == 1
    now[0] += 1.0
    d.tick()
    assert len(post.calls) == 2 and post.calls[0][1] == post.calls[1][1]  # a retry sends identical bytes
    cancel_job(zlt_home, queued_job)
    d.tick()
    d.tick()
    ids = [c[2][EVENT_ID_HEADER] for c in post.calls]
    assert ids == [f"{queued_job}:state:0", f"{queued_job}:state:0", f"{queued_job}:state:1"]
    for _url, body, headers in post.calls:
        assert verify(body, SECRET, headers[SIGNATURE_HEADER])
    last = json.loads(post.calls[-1][1])
    assert (last["type"], last["state"], last["job"]["state"]) == ("job.state", "cancelled", "cancelled")
    sub = Subscriptions(zlt_home).load(queued_job)
    assert sub["done"] is True and sub["pending"] == [] and sub["delivered"] == 2
    d.tick()
    assert len(post.calls) == 3  # done: nothing more


def test_a_receiver_that_keeps_failing_is_given_up_on(zlt_home: Path, queued_job: str):
    now = [0.0]
    post = FakePost(fail=100)
    d = WebhookDispatcher(zlt_home, SECRET, post=post, clock=lambda: now[0], max_attempts=3, backoff=lambda n: 1.0)
    for _ in range(6):
        d.tick()
        now[0] += 1.0
    assert len(post.calls) == 3
    sub = Subscriptions(zlt_home).load(queued_job)
    assert sub["failed"] == [{"event_id": f"{queued_job}:state:0", "error": "HTTP 503"}]


def test_real_post_reaches_a_loopback_receiver(zlt_home: Path, queued_job: str):
    got: list[tuple[bytes, dict]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((body, dict(self.headers)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Subscriptions(zlt_home).subscribe(queued_job, f"http://127.0.0.1:{server.server_address[1]}/hook")
        # A receiver on loopback is refused by default (SSRF); the operator's allow-list admits it.
        assert WebhookDispatcher(zlt_home, SECRET, timeout_s=5, allow=["127.0.0.1"]).tick() == 1
    finally:
        server.shutdown()
        server.server_close()
    body, headers = got[0]
    assert verify(body, SECRET, headers[SIGNATURE_HEADER])
    assert json.loads(body)["event_id"] == headers[EVENT_ID_HEADER] == f"{queued_job}:state:0"


def test_deliveries_go_out_in_the_order_things_happened():
    """The runner writes `finished` before the job's state changes; the receiver should see it that way too."""
    sub = {"job_id": "j1", "history_seen": 1, "after_seq": 4}
    history = [{"from_state": None, "to_state": "queued", "ts": "2025-01-01T00:00:00.000Z"},
               {"from_state": "running", "to_state": "succeeded", "ts": "2025-01-01T00:00:10.500Z"}]
    finished_at = history_ts = 1735689610.0  # 00:00:10.000Z, half a second before the state change
    events = [{"seq": 5, "ts": finished_at, "type": "finished", "status": "succeeded"}]
    out = new_deliveries(sub, history, events, {"state": "succeeded"}, now=history_ts + 60)
    assert [d["event_id"] for d in out] == ["j1:seq:5", "j1:state:1"]
    history[1]["ts"] = "2025-01-01T00:00:10.000Z"  # the same millisecond
    sub = {"job_id": "j1", "history_seen": 1, "after_seq": 4}
    out = new_deliveries(sub, history, events, {"state": "succeeded"}, now=history_ts + 60)
    assert [d["event_id"] for d in out] == ["j1:seq:5", "j1:state:1"]
