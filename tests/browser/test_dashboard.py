"""The dashboard in a real browser against a real `zlt serve`, its worker, and the tiny built-in model.

One server and one story (the steps depend on each other: the job trained first is the one promoted): log in, watch
a job reach succeeded without a reload, open its samples and curve, promote its version, cancel a running job; and
requests without the cookie or with a bad CSRF token are refused. With ZLT_DASHBOARD_SHOTS=<folder> the screenshots
of the pages are written there (docs/dashboard.md shows them: `make dashboard-shots`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve_client import read_first_line

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

pytestmark = [pytest.mark.slow, pytest.mark.serve]

WAIT_MS = 240_000  # generous for a loaded machine; on an idle one the whole story takes ~30 s


def tiny_spec(steps: int, samples: bool) -> dict:
    spec = {
        "name": "dashtiny",
        "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
        "dataset": {"path": "squares", "resolution": 32},
        "training": {"backend": "lightning", "max_steps": steps, "warmup_steps": 0, "batch_size": 1,
                     "gradient_accumulation": 1},
        "output": {"save": {"every": 2}},
        "job": {"resources": {"gpu": 0, "min_vram_gb": None}, "retry": {"max_retries": 0}},
    }
    if samples:
        spec["training"]["sample"] = {"enable": True, "every": 2, "steps": 1,
                                      "prompts": ["[trigger] a house", "[trigger] a tree"]}
    return spec


def make_images(folder: Path, n: int = 4) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (32, 32), (60 * i, 120, 200 - 40 * i)).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a flat colour square, number {i}")


class Server:
    def __init__(self, proc: subprocess.Popen, info: dict) -> None:
        self.proc, self.url = proc, info["url"]
        self.home = Path(info["home"])
        self.token = Path(info["token_file"]).read_text().strip()
        self.api = httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.token}"})

    def submit(self, spec: dict) -> str:
        r = self.api.post("/v1/jobs", json=spec)
        assert r.status_code == 202, r.text
        return r.json()["job_id"]

    def state(self, job_id: str) -> dict:
        return self.api.get(f"/v1/jobs/{job_id}").json()


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    import psutil

    home = tmp_path_factory.mktemp("dash_home")
    root = tmp_path_factory.mktemp("dash_data")
    make_images(root / "squares")
    env = {**os.environ, "ZLT_HOME": str(home), "ZLT_CONFIG": str(home / "config.toml"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zlt", "serve", "--host", "127.0.0.1", "--port", "0", "--json",
                             "--data-root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    srv = Server(proc, json.loads(read_first_line(proc, 60)))
    seen: dict[int, psutil.Process] = {}
    try:
        yield srv
    finally:
        srv.api.close()
        for p in descendants(proc.pid):  # its worker and whatever the worker still runs
            seen[p.pid] = p
        try:
            worker = json.loads((home / "run" / "worker.pid").read_text())["pid"]
            seen.setdefault(worker, psutil.Process(worker))
        except (OSError, ValueError, KeyError, psutil.NoSuchProcess):
            pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for p in list(seen.values()):
            if p.is_running():
                p.terminate()
        _gone, alive = psutil.wait_procs(list(seen.values()), timeout=15)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=5)
        left = [p.pid for p in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"processes left running: {left}"


def shot(page, name: str, tmp: Path) -> None:
    folder = Path(os.environ.get("ZLT_DASHBOARD_SHOTS") or tmp)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_dashboard_in_a_real_browser(server: Server, chromium, tmp_path: Path):
    from playwright.sync_api import expect

    job_a = server.submit(tiny_spec(4, samples=True))
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()

    # Log in: the login form sets an HttpOnly, SameSite=Strict cookie, and sends us where we were going.
    page.goto(f"{server.url}/ui/jobs")
    assert "/ui/login" in page.url
    page.fill("#token", "wrong-token-0123456789")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("wrong token")
    page.fill("#token", server.token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/jobs")
    cookie = next(c for c in ctx.cookies() if c["name"] == "zlt_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "zlt_session" not in page.evaluate("document.cookie")

    # Watch job A reach succeeded live: the row changes under a marker a reload would erase.
    page.evaluate("window.__noReload = true")
    row = page.locator(f'#job-rows tr[data-job="{job_a}"]')
    expect(row).to_have_count(1)
    expect(row.locator('[data-f="state"]')).to_have_text("succeeded", timeout=WAIT_MS)
    assert page.evaluate("window.__noReload") is True
    expect(row.locator('[data-f="steps"]')).to_have_text("4/4")

    # Its page: the loss curve (inline SVG from the one series) and the samples per step.
    row.locator("a").first.click()
    page.wait_for_url(f"**/ui/jobs/{job_a}")
    expect(page.locator("#state")).to_have_text("succeeded")
    assert len(page.locator("#chart polyline.loss").get_attribute("points").split()) == 4
    steps = page.locator("#samples figure.step")
    expect(steps).to_have_count(2)  # every 2 steps of 4
    assert [s.get_attribute("data-step") for s in steps.all()] == ["2", "4"]
    images = page.locator("#samples img")
    expect(images).to_have_count(4)  # two prompts
    assert {images.nth(i).get_attribute("loading") for i in range(4)} == {"lazy"}
    images.last.scroll_into_view_if_needed()
    page.wait_for_function("[...document.querySelectorAll('#samples img')].every(i => i.complete && i.naturalWidth > 0)")
    with page.expect_response(lambda r: "/files/" in r.url) as resp:
        page.locator("#samples a").first.click()
    assert resp.value.status == 200 and resp.value.headers["content-type"] == "image/png"
    page.go_back()
    shot(page, "job", tmp_path)

    # Artifacts: promote the version the job made.
    art = server.state(job_a)["artifact_id"]
    page.goto(f"{server.url}/ui/artifacts")
    version = page.locator(f'tr[data-artifact="{art}"]')
    expect(version).to_contain_text("current")  # the newest, none promoted yet
    version.get_by_role("button", name="Promote").click()
    page.wait_for_url(f"**/ui/artifacts/{art}?msg=*")
    expect(page.locator(".flash")).to_contain_text("is now the current version of dashtiny")
    expect(page.get_by_role("button", name="Promote to current")).to_have_count(0)
    assert server.api.get("/v1/artifacts/dashtiny").json()["id"] == art
    from zlt.artifacts.promote import history

    assert [(h["action"], h["artifact_id"]) for h in history(server.home, "dashtiny")] == [("promote", art)]
    expect(page.locator("img[alt='Loss curve']")).to_have_count(1)
    shot(page, "artifact", tmp_path)
    page.goto(f"{server.url}/ui/artifacts")
    shot(page, "artifacts", tmp_path)

    # Cancel a running job from its page; the state follows live.
    job_b = server.submit(tiny_spec(5000, samples=False))
    page.goto(f"{server.url}/ui/jobs/{job_b}")
    expect(page.locator("#state")).to_have_text("running", timeout=WAIT_MS)  # queued -> running, live
    page.goto(f"{server.url}/ui/jobs")
    expect(page.locator(f'#job-rows tr[data-job="{job_b}"] [data-f="state"]')).to_have_text("running")
    shot(page, "jobs", tmp_path)
    page.goto(f"{server.url}/ui/jobs/{job_b}")
    page.click("#cancel")
    page.wait_for_url(f"**/ui/jobs/{job_b}?msg=*")
    expect(page.locator("#state")).to_have_text("cancelled", timeout=WAIT_MS)
    assert server.state(job_b)["state"] == "cancelled"
    expect(page.locator("#retry")).to_have_count(1)

    # Refused: a bad CSRF token with the cookie, and anything without the cookie.
    r = page.request.post(f"{server.url}/ui/jobs/{job_b}/retry", form={"csrf": "0" * 64}, max_redirects=0)
    assert r.status == 403
    r = page.request.post(f"{server.url}/v1/jobs/{job_b}/retry")  # the cookie, no X-CSRF-Token
    assert r.status == 403
    assert server.state(job_b)["state"] == "cancelled"
    bare = chromium.new_context()
    try:
        r = bare.request.get(f"{server.url}/ui/jobs/{job_a}", max_redirects=0)
        assert r.status == 303 and r.headers["location"].startswith("/ui/login")
        assert bare.request.get(f"{server.url}/v1/jobs").status == 401
        r = bare.request.post(f"{server.url}/ui/jobs/{job_b}/retry", form={"csrf": "0" * 64}, max_redirects=0)
        assert r.status == 401
        assert bare.request.get(f"{server.url}/ui/static/dash.css").status == 200
    finally:
        bare.close()

    # A phone's width: the pages fit without scrolling sideways.
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, storage_state=ctx.storage_state())
    try:
        p = phone.new_page()
        for path in ("/ui/jobs", f"/ui/jobs/{job_a}", f"/ui/artifacts/{art}"):
            p.goto(server.url + path)
            assert p.evaluate("document.documentElement.scrollWidth") <= 392, path
    finally:
        phone.close()
    ctx.close()
