"""`zlt serve` as a user runs it: a real uvicorn server on a loopback port, a real worker, the tiny built-in model.

One server for the module (a job takes ~15 s on CPU, most of it loading the tiny model): the tests run in
file order and share its home, data root and worker.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.serve_client import read_first_line

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

pytestmark = [pytest.mark.slow, pytest.mark.serve]

TIMEOUT = httpx.Timeout(10.0, read=30.0)


def tiny_spec(dataset: str | None, **job) -> dict:
    spec = {
        "name": "tinyserve",
        "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
        "dataset": {"resolution": 64},
        "training": {"backend": "lightning", "max_steps": 8, "warmup_steps": 0},
        "output": {"save": {"every": 4}},
        "job": {"resources": {"gpu": 0, "min_vram_gb": None}, "retry": {"max_retries": 0}, **job},
    }
    if dataset is not None:
        spec["dataset"]["path"] = dataset
    return spec


def make_images(folder: Path, n: int = 4) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (64, 64), (60 * i, 120, 200 - 40 * i)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a flat colour square, number {i}")
    return folder


class Server:
    def __init__(self, proc: subprocess.Popen, info: dict, home: Path, root: Path) -> None:
        self.proc, self.info, self.home, self.root = proc, info, home, root
        self.url = info["url"]
        self.token = Path(info["token_file"]).read_text().strip()
        self.secret = Path(info["webhook_secret_file"]).read_text().strip()
        self.client = httpx.Client(base_url=self.url, timeout=TIMEOUT,
                                   headers={"Authorization": f"Bearer {self.token}"})

    def wait_state(self, job_id: str, states: set[str], timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.client.get(f"/v1/jobs/{job_id}").json()
            if st["state"] in states:
                return st
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} never reached {states}: {st}")


def stop_worker(home: Path) -> None:
    """The background worker the server's submits started (its pid is in run/worker.pid)."""
    try:
        pid = json.loads((home / "run" / "worker.pid").read_text())["pid"]
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("serve_home")
    root = tmp_path_factory.mktemp("data_root")
    make_images(root / "squares")
    env = {**os.environ, "ZLT_HOME": str(home), "ZLT_CONFIG": str(home / "config.toml"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zlt", "serve", "--host", "127.0.0.1", "--port", "0", "--json",
                             "--data-root", str(root), "--max-upload-mb", "1", "--max-extract-mb", "2",
                             "--callback-allow", "127.0.0.1"],  # the test's webhook receiver is on loopback
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    srv = Server(proc, json.loads(read_first_line(proc, 60)), home, root)
    yield srv
    srv.client.close()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    stop_worker(home)


def test_binds_loopback_and_the_token_file_is_private(server: Server):
    assert server.url.startswith("http://127.0.0.1:")
    assert stat.S_IMODE(Path(server.info["token_file"]).stat().st_mode) == 0o600
    assert httpx.get(f"{server.url}/healthz", timeout=TIMEOUT).json()["ok"] is True


def test_401_without_the_token(server: Server):
    for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/openapi.json"), ("GET", "/v1/artifacts"),
                         ("POST", "/lora/train"), ("GET", "/v1/jobs/x/events")]:
        r = httpx.request(method, server.url + path, timeout=TIMEOUT)
        assert r.status_code == 401, path
        r = httpx.request(method, server.url + path, timeout=TIMEOUT, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401, path


def test_422_names_every_field(server: Server):
    bad = tiny_spec("squares")
    bad["training"].update(max_steps=0, learning_rate=5)
    bad["model"]["lora"] = {"rank": 999}
    r = server.client.post("/v1/jobs", json=bad)
    assert r.status_code == 422
    detail = r.json()["detail"]
    for path in ("training.max_steps: ", "training.learning_rate: ", "model.lora.rank: "):
        assert any(d.startswith(path) for d in detail), (path, detail)


def test_dataset_paths_outside_the_data_roots_are_refused(server: Server, tmp_path: Path):
    outside = make_images(tmp_path / "elsewhere")
    for path in (str(outside), "../" + outside.name, "squares/../../" + outside.name):
        r = server.client.post("/v1/jobs", json=tiny_spec(path))
        assert r.status_code == 422, path
        assert r.json()["errors"][0]["path"] == "dataset.path"
    assert server.client.get("/v1/jobs").json() == []


def zip_bytes(entries: list[tuple[str, bytes]], symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink[0])
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, symlink[1])
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["zip-slip", "absolute", "symlink", "bomb", "too-big"])
def test_hostile_zips_are_refused(server: Server, kind: str):
    png = b"\x89PNG fake"
    payload = {
        "zip-slip": lambda: zip_bytes([("a.png", png), ("../../../escaped.png", png)]),
        "absolute": lambda: zip_bytes([("/tmp/escaped.png", png)]),
        "symlink": lambda: zip_bytes([("a.png", png)], symlink=("b.png", "/etc/passwd")),
        "bomb": lambda: zip_bytes([("a.png", b"\0" * (3 << 20))]),  # 3 MiB of zeros: tiny zip, over the 2 MiB cap
        "too-big": lambda: os.urandom(2 << 20),  # over the 1 MiB upload cap
    }[kind]()
    r = server.client.post("/v1/jobs", data={"spec": json.dumps(tiny_spec(None))},
                           files={"dataset": ("set.zip", payload, "application/zip")})
    assert r.status_code in (400, 413), r.text
    assert r.json()["error"] in ("upload_refused", "upload_too_large")
    uploads = server.home / "serve" / "uploads"
    assert not list(uploads.glob("*/*")) if uploads.exists() else True
    assert not (server.home.parent / "escaped.png").exists()


class Receiver:
    """A webhook endpoint on loopback that records every delivery."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sse_events(response, stop_after_seq: int | None = None) -> list[dict]:
    """Parse an SSE response into event dicts (with the frame's id checked against the event's seq)."""
    out: list[dict] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                ev = json.loads(fields["data"])
                assert int(fields["id"]) == ev["seq"] and fields["event"] == ev["type"]
                out.append(ev)
                if stop_after_seq is not None and ev["seq"] >= stop_after_seq:
                    return out
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
    return out


def test_train_follow_reconnect_webhooks_and_artifacts(server: Server):
    hook = Receiver()
    try:
        r = server.client.post("/v1/jobs", json=tiny_spec("squares", callback_url=hook.url))
        assert r.status_code == 202, r.text
        acc = r.json()
        job_id = acc["job_id"]
        assert acc["status_url"] == f"{server.url}/v1/jobs/{job_id}" and r.headers["location"] == acc["status_url"]
        assert acc["events_url"] == f"{server.url}/v1/jobs/{job_id}/events"

        # Follow the stream, drop the connection after a few events, come back with Last-Event-ID.
        with server.client.stream("GET", acc["events_url"]) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            first = sse_events(resp, stop_after_seq=3)
        assert [e["seq"] for e in first] == [1, 2, 3]
        with server.client.stream("GET", acc["events_url"], headers={"Last-Event-ID": "3"}) as resp:
            rest = sse_events(resp)  # the server ends the stream after `finished`
        seen = first + rest
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))  # nothing lost, nothing twice
        assert any(e["type"] == "progress" for e in seen)
        finished = [e for e in seen if e["type"] == "finished"]
        assert finished[-1]["status"] == "succeeded"
        replay = server.client.get(acc["events_url"], params={"follow": "false"})
        assert [json.loads(line[6:]) for line in replay.text.splitlines() if line.startswith("data: ")] == seen

        status = server.client.get(acc["status_url"]).json()
        cli = subprocess.run([sys.executable, "-m", "zlt", "status", job_id, "--json"], capture_output=True, text=True,
                             env={**os.environ, "ZLT_HOME": str(server.home)}, timeout=60)
        assert cli.returncode == 0, cli.stderr
        cli_status = json.loads(cli.stdout)
        assert list(status) == list(cli_status)  # the same object as `zlt status --json`
        assert {k: v for k, v in status.items() if k != "eta_s"} == {k: v for k, v in cli_status.items() if k != "eta_s"}
        assert status["state"] == "succeeded" and status["artifact_id"]

        # Webhooks: state changes, checkpoints and the end, each signed and with a unique event id.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(b'"job.finished"' in b for b, _ in hook.got):
            time.sleep(0.3)
    finally:
        hook.close()
    from zlt.serve.webhooks import verify

    bodies = [json.loads(b) for b, _ in hook.got]
    for raw, headers in hook.got:
        assert verify(raw, server.secret, headers["x-zlt-signature"])
        assert json.loads(raw)["event_id"] == headers["x-zlt-event-id"]
    ids = [b["event_id"] for b in bodies]
    assert len(ids) == len(set(ids))
    states = [b["state"] for b in bodies if b["type"] == "job.state"]
    assert states[0] == "queued" and states[-1] == "succeeded"
    assert any(b["type"] == "job.checkpoint" for b in bodies)
    assert any(b["type"] == "job.finished" and b["event"]["status"] == "succeeded" for b in bodies)

    # Artifacts: listed, described, downloadable; nothing outside the artifact folder.
    arts = server.client.get("/v1/artifacts").json()
    art = next(a for a in arts if a["job_id"] == job_id)
    detail = server.client.get(f"/v1/artifacts/{art['id']}").json()
    assert detail["id"] == art["id"]
    lora = server.client.get(f"/v1/artifacts/{art['id']}/files/lora.safetensors")
    assert lora.status_code == 200 and len(lora.content) > 100
    assert server.client.get(f"/v1/artifacts/{art['id']}/files/..%2F..%2Fzlt.db").status_code == 404


def test_zip_upload_via_lora_train_then_cancel_and_retry(server: Server, tmp_path: Path):
    folder = make_images(tmp_path / "Ink Wash")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"Ink Wash/{p.name}")
    body = tiny_spec(None)
    body.pop("name")
    body["training"]["max_steps"] = 5000  # long enough to still be going when cancelled
    r = server.client.post("/lora/train", data={"spec": json.dumps(body)},
                           files={"dataset": ("ink wash.zip", buf.getvalue(), "application/zip")})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["job"]["name"] == "ink_wash"  # named after the uploaded folder
    uploaded = server.home / "serve" / "uploads"
    assert len(list(uploaded.glob("*/ink_wash/img*.png"))) == 4

    assert server.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert server.wait_state(job_id, {"cancelled"}, 90)["state"] == "cancelled"
    r = server.client.post(f"/v1/jobs/{job_id}/retry")
    assert r.status_code == 200 and r.json()["state"] == "queued"
    server.client.post(f"/v1/jobs/{job_id}/cancel")
    server.wait_state(job_id, {"cancelled"}, 90)
    r = server.client.post(f"/v1/jobs/{job_id}/cancel")  # cancelling a cancelled job is a no-op
    assert r.status_code == 200
    listed = server.client.get("/v1/jobs", params={"state": "cancelled"}).json()
    assert [j["job_id"] for j in listed] == [job_id]
