"""Issue 24, items 5 and 6 and the 100 KB callback URL: a callback URL can neither break webhooks for other jobs
nor make the server POST inside its own network (SSRF). No test sends traffic anywhere but loopback: refusals are
checked without connecting, and deliveries go to a receiver on 127.0.0.1 that the allow-list admits."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from zlt.core.callback_url import MAX_URL_CHARS, CallbackAllow, check_callback_url, parse_callback_url
from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_json
from zlt.serve.webhooks import EVENT_ID_HEADER, PostResult, Subscriptions, WebhookDispatcher, post_json

SECRET = "whsec-0123456789abcdef"
LOOPBACK_SPELLINGS = ["http://127.0.0.1/", "http://127.0.0.1:8765/v1/jobs", "http://127.1/", "http://2130706433/",
                      "http://0x7f000001/", "http://0177.0.0.1/", "http://0x7f.1/", "http://127.255.255.254/",
                      "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
                      "http://[0:0:0:0:0:ffff:7f00:1]/", "http://localhost/", "http://LOCALHOST./",
                      "http://api.localhost/", "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/"]
INSIDE = ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://10.0.0.1/", "http://172.16.0.1/",
          "http://172.31.255.255/", "http://192.168.1.1/", "http://[fc00::1]/", "http://[fd12:3456::1]/",
          "http://224.0.0.1/", "http://239.1.2.3/", "http://[ff02::1]/", "http://0.0.0.0/", "http://0/", "http://[::]/",
          "http://100.64.0.1/", "http://255.255.255.255/", "http://[::ffff:169.254.169.254]/", "http://0xa9fea9fe/"]
MALFORMED = ["http://hooks.example.com/a\r\nX-Injected: 1", "http://hooks.example.com/\n", "http://hooks.example.com/\t",
             "http://hooks.example.com/a b", " http://hooks.example.com/", "http://hooks.example.com/\x00",
             "http://hooks.example.com/\x7f", "http://hooks.exämple.com/", "ftp://hooks.example.com/",
             "file:///etc/passwd", "gopher://hooks.example.com/", "http://", "http://user:pw@hooks.example.com/",
             "http://hooks.example.com@127.0.0.1/", "http://hooks.example.com:0/", "http://hooks.example.com:99999/",
             "http://[::1/", "http://[127.0.0.1]/", "http://hooks%2eexample.com/", "http://a!b.com/"]
PUBLIC = ["https://agents.example.com/hooks/zlt", "http://93.184.216.34:8080/x?job=1", "http://[2606:4700::1]/hook",
          "https://hooks.example.com./x"]


# -- the URL rule (pure, no network) -----------------------------------------------------------------------------

@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS + INSIDE + MALFORMED)
def test_loopback_inside_and_malformed_urls_are_refused_naming_the_field(url):
    with pytest.raises(BadInputError, match=r"^job\.callback_url: "):
        check_callback_url(url)


@pytest.mark.parametrize("url", PUBLIC)
def test_public_http_urls_pass(url):
    assert check_callback_url(url) == url


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "1.2.3.4", "0"])
def test_numeric_hosts_are_read_as_the_resolver_reads_them(host):
    assert str(parse_callback_url(f"http://{host}/").address) == socket.inet_ntoa(socket.inet_aton(host))


def test_a_refusal_says_what_the_address_is():
    with pytest.raises(BadInputError, match=r"2130706433 \(127\.0\.0\.1\) is loopback") as e:
        check_callback_url("http://2130706433/")
    assert "--callback-allow" in e.value.hint
    with pytest.raises(BadInputError, match=r"loopback, as 127\.0\.0\.1"):
        check_callback_url("http://[::ffff:127.0.0.1]/")


def test_the_url_length_is_capped():
    base = "https://hooks.example.com/"
    assert check_callback_url(base + "a" * (MAX_URL_CHARS - len(base)))
    with pytest.raises(BadInputError, match=r"at most 2048"):
        check_callback_url(base + "a" * (MAX_URL_CHARS - len(base) + 1))
    with pytest.raises(BadInputError, match=r"at most 2048"):
        check_callback_url(base + "a" * 100_000)


def test_the_allow_list_admits_networks_addresses_and_host_names():
    allow = CallbackAllow.parse(["127.0.0.1", "10.0.0.0/8,fd00::/8", "hooks.svc.cluster.local *.internal.example"])
    for url in ("http://127.0.0.1:9/", "http://2130706433/", "http://10.2.3.4/", "http://[fd00::5]/",
                "http://[::ffff:127.0.0.1]/", "http://hooks.svc.cluster.local/", "http://a.b.internal.example/"):
        assert allow.check(url) == url
    for url in ("http://127.0.0.2/", "http://192.168.0.1/", "http://169.254.169.254/", "http://localhost/"):
        with pytest.raises(BadInputError, match=r"^job\.callback_url: "):
            allow.check(url)
    assert CallbackAllow.parse(["localhost"]).check("http://localhost:8080/") == "http://localhost:8080/"
    with pytest.raises(BadInputError, match=r"^--callback-allow: 'no/such/thing'"):
        CallbackAllow.parse(["no/such/thing"])


# -- at submit: HTTP and MCP answer 422 naming job.callback_url --------------------------------------------------

@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    (r / "style").mkdir(parents=True)
    (r / "style" / "a.png").write_bytes(b"x")
    return r


HOSTILE_AT_SUBMIT = ["http://hooks.example.com/a\r\nX-Injected: 1", "http://127.0.0.1:8765/", "http://[::1]/",
                     "http://2130706433/", "http://169.254.169.254/", "https://hooks.example.com/" + "a" * 100_000]


def _spec(url: str) -> dict:
    return {"dataset": {"path": "style"}, "job": {"callback_url": url}}


def test_http_refuses_hostile_callback_urls_with_422(zlt_home: Path, data_root: Path):
    pytest.importorskip("fastapi")
    from tests.serve_client import AUTH, serve_client

    with serve_client(zlt_home, [data_root]) as c:
        for url in HOSTILE_AT_SUBMIT:
            for route in ("/v1/specs/validate", "/v1/jobs"):
                r = c.post(route, headers=AUTH, json=_spec(url))
                assert r.status_code == 422, (route, url[:80], r.text[:300])
                assert "job.callback_url" in [e["path"] for e in r.json()["errors"]], r.text[:300]
        assert c.post("/v1/specs/validate", headers=AUTH,
                      json=_spec("https://agents.example.com/hooks/zlt")).status_code == 200
    assert not (zlt_home / "serve" / "webhooks").exists() or not list((zlt_home / "serve" / "webhooks").iterdir())


def test_the_operator_allow_list_admits_an_in_cluster_receiver_at_submit(zlt_home: Path, data_root: Path):
    pytest.importorskip("fastapi")
    from tests.serve_client import AUTH, serve_client

    with serve_client(zlt_home, [data_root], callback_allow=["127.0.0.1", "10.0.0.0/8"]) as c:
        for url in ("http://127.0.0.1:9000/hook", "http://10.1.2.3/hook"):
            assert c.post("/v1/specs/validate", headers=AUTH, json=_spec(url)).status_code == 200, url
        assert c.post("/v1/specs/validate", headers=AUTH, json=_spec("http://169.254.169.254/")).status_code == 422
    with pytest.raises(BadInputError, match="--callback-allow"):
        serve_client(zlt_home, [data_root], callback_allow=["not a/host"]).__enter__()


def test_mcp_refuses_hostile_callback_urls(zlt_home: Path, data_root: Path):
    pytest.importorskip("mcp")
    from zlt.serve.intake import Fence
    from zlt.serve.mcp_server import call, make_tools

    tools = {t.name: t for t in make_tools(zlt_home, Fence((data_root,), None, source="<mcp>"))}
    for url in HOSTILE_AT_SUBMIT:
        for name in ("validate_spec", "submit_lora_job"):
            result, is_error = call(tools[name], {"spec": _spec(url)})
            assert is_error and "job.callback_url" in json.dumps(result)[:2000], (name, url[:80], result)


def test_the_cli_has_the_allow_list_option():
    from typer.testing import CliRunner

    from zlt.cli.app import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--callback-allow" in out


# -- at delivery: one job's failure is its own; addresses are checked after resolving -----------------------------

@pytest.fixture
def two_jobs(zlt_home: Path, tmp_path: Path) -> tuple[str, str]:
    """Two real queued jobs (no worker)."""
    from PIL import Image

    from zlt.jobs import submit_job
    from zlt.spec import load_spec_data

    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (i * 90, 40, 40)).save(ds / f"{i}.png")
    ids = []
    for name in ("bad", "good"):
        loaded = load_spec_data({"name": name, "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
                                 "dataset": {"path": str(ds), "resolution": 64},
                                 "training": {"max_steps": 4, "warmup_steps": 0}, "output": {"save": {"every": 2}},
                                 "job": {"resources": {"gpu": 0}}})
        ids.append(submit_job(zlt_home, loaded, start_worker=False)["job_id"])
    return ids[0], ids[1]


def _plant(home: Path, job_id: str, url: str) -> None:
    """A subscription as a server before this fix (or a hand edit) could have left it: the URL never checked."""
    atomic_write_json(Subscriptions(home).path(job_id), {"job_id": job_id, "url": url, "history_seen": 0,
                                                         "after_seq": 0, "pending": [], "delivered": 0, "failed": [],
                                                         "done": False, "generation": 1})


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, url: str, body: bytes, headers: dict, timeout: float) -> PostResult:
        self.calls.append(url)
        if "\r" in url:
            raise http.client.InvalidURL("URL can't contain control characters")  # not a ValueError
        return PostResult(True, "HTTP 200")


def test_a_post_that_raises_fails_only_its_own_job(zlt_home: Path, two_jobs):
    bad, good = two_jobs
    _plant(zlt_home, bad, "http://hooks.example.com/a\r\nX: 1")
    Subscriptions(zlt_home).subscribe(good, "https://hooks.example.com/good")
    lines: list[str] = []
    now = [0.0]
    post = Recorder()
    d = WebhookDispatcher(zlt_home, SECRET, post=post, clock=lambda: now[0], max_attempts=3, backoff=lambda n: 1.0,
                          log=lines.append)
    for _ in range(10):
        d.tick()
        now[0] += 1.0
    assert post.calls.count("https://hooks.example.com/good") == 1  # the other job was delivered
    assert len([u for u in post.calls if "\r" in u]) == 3  # the bad one: retried per the policy, then given up
    failed = Subscriptions(zlt_home).load(bad)["failed"]
    assert failed[0]["event_id"] == f"{bad}:state:0" and "InvalidURL" in failed[0]["error"]
    assert Subscriptions(zlt_home).load(good)["delivered"] == 1
    assert lines == []  # a failed delivery is recorded on its job, not logged every pass


def test_the_real_post_refuses_a_malformed_stored_url_at_once_without_connecting(zlt_home: Path, two_jobs,
                                                                              monkeypatch):
    bad, good = two_jobs
    _plant(zlt_home, bad, "http://127.0.0.1:9/a\r\nX: 1")
    _plant(zlt_home, good, "http://2130706433:9/")  # a loopback spelling stored before the fix
    monkeypatch.setattr(socket, "create_connection", _no_connect)
    monkeypatch.setattr(socket, "getaddrinfo", _no_resolve)
    d = WebhookDispatcher(zlt_home, SECRET, max_attempts=8)
    for _ in range(3):
        d.tick()
    for job_id, why in ((bad, "control character"), (good, "loopback")):
        sub = Subscriptions(zlt_home).load(job_id)
        assert why in sub["failed"][0]["error"] and sub["pending"] == []  # permanent: no eight retries


def test_one_jobs_broken_records_do_not_stop_the_others(zlt_home: Path, two_jobs, monkeypatch):
    import zlt.serve.webhooks as webhooks

    bad, good = two_jobs
    Subscriptions(zlt_home).subscribe(bad, "https://hooks.example.com/bad")
    Subscriptions(zlt_home).subscribe(good, "https://hooks.example.com/good")
    (Subscriptions(zlt_home).dir / "junk.json").write_text("[1, 2, 3]")  # not a subscription: skipped
    real_status = webhooks.job_status

    def status(home, job_id):
        if job_id == bad:
            raise RuntimeError("database is locked")
        return real_status(home, job_id)

    monkeypatch.setattr(webhooks, "job_status", status)
    lines: list[str] = []
    now = [0.0]
    post = Recorder()
    d = WebhookDispatcher(zlt_home, SECRET, post=post, clock=lambda: now[0], max_attempts=3, backoff=lambda n: 2.0,
                          log=lines.append)
    for _ in range(20):
        d.tick()
        now[0] += 1.0
    assert post.calls == ["https://hooks.example.com/good"]
    assert len(lines) == 2 and "retrying" in lines[0] and "given up" in lines[1]  # logged once, then once more
    sub = Subscriptions(zlt_home).load(bad)
    assert sub["done"] is True and "database is locked" in sub["gone"]


def _no_connect(*args, **kwargs):
    raise AssertionError(f"tried to connect: {args}")


def _no_resolve(*args, **kwargs):
    raise AssertionError(f"tried to resolve: {args}")


def test_a_name_that_resolves_inside_is_refused_when_delivering(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", _no_connect)
    for answer in (["127.0.0.1"], ["93.184.216.34", "10.0.0.7"], ["::ffff:169.254.169.254"], ["fe80::1%2"]):
        result = post_json("https://hooks.example.com/x", b"{}", {}, 1.0, resolver=lambda host, port, a=answer: a)
        assert not result.ok and result.permanent and "hooks.example.com" in result.detail, (answer, result)
    result = post_json("http://169.254.169.254/", b"{}", {}, 1.0, resolver=_no_resolve)
    assert not result.ok and result.permanent and "link-local" in result.detail


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict]]]:
    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append(dict(self.headers))
            if self.path == "/redirect":
                self.send_response(307)
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            else:
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], got
    finally:
        server.shutdown()
        server.server_close()


def test_delivery_connects_to_the_checked_address_only(receiver):
    """The name is resolved once, every answer checked, and the connection goes to that checked answer: a DNS
    rebind (a second answer pointing elsewhere) is never used. Host still names the URL's host."""
    port, got = receiver
    answers = [["127.0.0.1"], ["10.9.9.9"]]
    asked: list[str] = []

    def rebinding(host: str, p: int) -> list[str]:
        asked.append(host)
        return answers[len(asked) - 1]

    allow = CallbackAllow.parse(["127.0.0.1"])
    result = post_json(f"http://receiver.test:{port}/hook", b'{"a":1}', {"X-Test": "1"}, 5.0, allow=allow,
                       resolver=rebinding)
    assert result.ok, result
    assert asked == ["receiver.test"] and got[0]["Host"] == f"receiver.test:{port}" and got[0]["X-Test"] == "1"
    result = post_json(f"http://receiver.test:{port}/hook", b"{}", {}, 5.0, allow=allow, resolver=rebinding)
    assert not result.ok and result.permanent and "10.9.9.9" in result.detail and len(got) == 1


def test_redirects_are_not_followed(receiver):
    port, got = receiver
    result = post_json(f"http://127.0.0.1:{port}/redirect", b"{}", {}, 5.0, allow=CallbackAllow.parse(["127.0.0.1"]))
    assert not result.ok and result.detail == "HTTP 307" and len(got) == 1


def test_a_loopback_receiver_gets_nothing_unless_allowed(zlt_home: Path, two_jobs, receiver):
    port, got = receiver
    job, _ = two_jobs
    Subscriptions(zlt_home).subscribe(job, f"http://127.0.0.1:{port}/hook")
    WebhookDispatcher(zlt_home, SECRET).tick()
    assert got == [] and "loopback" in Subscriptions(zlt_home).load(job)["failed"][0]["error"]
    _plant(zlt_home, job, f"http://127.0.0.1:{port}/hook")  # afresh, for a server that allows loopback
    assert WebhookDispatcher(zlt_home, SECRET, allow=["127.0.0.0/8"]).tick() == 1
    assert got[0][EVENT_ID_HEADER] == f"{job}:state:0"


# -- retrain: an override in any syntax, and a parent's URL from before this rule ---------------------------------

@pytest.fixture
def artifact_with_hook(tmp_path: Path, zlt_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An artifact whose job's spec names a loopback callback URL (accepted before this rule existed)."""
    pytest.importorskip("fastapi")
    from PIL import Image

    import zlt.jobs.spawn
    from tests.fixtures.artifact_jobs import make_job_dir
    from zlt.artifacts import collect_artifact

    monkeypatch.setattr(zlt.jobs.spawn, "ensure_worker", lambda home: None)
    monkeypatch.setattr("zlt.jobs.api.ensure_worker", lambda home: None, raising=False)
    job = make_job_dir(tmp_path / "jobs", spec={"job": {"callback_url": "http://127.0.0.1:8765/hook"}})
    (job / "dataset").mkdir()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(job / "dataset" / "a.png")
    return collect_artifact(job, home=zlt_home).id


def test_retrain_overrides_cannot_point_the_callback_inside(zlt_home: Path, tmp_path: Path, artifact_with_hook: str):
    from tests.serve_client import AUTH, serve_client
    from zlt.serve.intake import Fence
    from zlt.serve.mcp_server import call, make_tools

    overrides = ["job={callback_url: 'http://169.254.169.254/'}", "job.callback_url=http://2130706433/",
                 "job.callback_url=http://[::1]:8765/", f"job.callback_url=https://hooks.example.com/{'a' * 3000}"]
    (tmp_path / "data").mkdir()
    with serve_client(zlt_home, [tmp_path / "data"]) as c:
        for override in overrides:
            r = c.post(f"/v1/artifacts/{artifact_with_hook}/retrain", headers=AUTH, json={"set": [override]})
            assert r.status_code == 422, (override[:80], r.text[:300])
            assert "job.callback_url" in [e["path"] for e in r.json()["errors"]], r.text[:300]
        # The parent's own (old, loopback) URL: the retrain runs, without webhooks, and says so.
        r = c.post(f"/v1/artifacts/{artifact_with_hook}/retrain", headers=AUTH, json={"steps": 10})
        assert r.status_code == 202, r.text
        assert any("no webhooks" in w for w in r.json()["job"]["warnings"])
        assert Subscriptions(zlt_home).load(r.json()["job_id"]) is None
    tool = next(t for t in make_tools(zlt_home, Fence(None, None, source="<mcp>")) if t.name == "retrain_lora")
    for override in overrides:
        result, is_error = call(tool, {"artifact": artifact_with_hook, "set": [override]})
        assert is_error and "job.callback_url" in json.dumps(result)[:3000], (override[:80], result)
