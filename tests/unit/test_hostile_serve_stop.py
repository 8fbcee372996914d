"""Issue 24, item 11: `zlt serve`'s own worker goes when serve goes (SIGTERM, SIGINT, or serve killed outright), and a
worker whose home folder was removed exits with a message instead of polling forever. Also the loose end of the
fences: a `zlt mcp --data-root` session fences model paths as `zlt serve` does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.serve_client import read_first_line
from zlt.cli.serve import mcp_fence
from zlt.core.errors import EnvNotReadyError
from zlt.jobs.spawn import STOP_WITH_PARENT_ENV, parent_pipe
from zlt.jobs.store import JobStore
from zlt.jobs.worker import Worker, WorkerOptions


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "ZLT_HOME": str(home), "ZLT_CONFIG": str(home / "config.toml"), "HF_HUB_OFFLINE": "1"}


def _wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _workers_of(home: Path) -> list[psutil.Process]:
    """Every live `zlt worker` process whose --home is `home` (whoever its parent is now)."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "worker" in cmd and "--home" in cmd and cmd[cmd.index("--home") + 1] == str(home) \
                and p.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(p)
    return out


@pytest.fixture
def serve_proc(tmp_path: Path):
    """`zlt serve` on a loopback port with its own worker; yields (process, home) once that worker has started."""
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "zlt", "serve", "--host", "127.0.0.1", "--port", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(home))
    try:
        json.loads(read_first_line(proc, 90))
        log = home / "logs" / "worker.log"
        _wait(lambda: log.exists() and "started on" in log.read_text(errors="replace"), 90, "the worker to start")
        assert _workers_of(home), "serve started no worker"
        yield proc, home
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for p in _workers_of(home):  # never leave one behind, even when the test failed
            p.kill()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_serve_stopped_by_a_signal_takes_its_worker_with_it(serve_proc, sig):
    proc, home = serve_proc
    workers = _workers_of(home)
    proc.send_signal(sig)
    proc.wait(30)
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"worker(s) {[p.pid for p in alive]} outlived `zlt serve` ({sig.name})"
    if sig != signal.SIGKILL:
        assert "stopped" in (home / "logs" / "worker.log").read_text(errors="replace")


@pytest.mark.slow
def test_a_worker_whose_home_is_removed_exits_with_a_message(tmp_path: Path):
    home = tmp_path / "home"
    err = tmp_path / "worker.err"  # outside the home: the message must survive the removal
    with open(err, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "zlt", "worker", "--home", str(home), "--poll", "0.1"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=_env(home))
    try:
        _wait(lambda: "started on" in err.read_text(errors="replace"), 90, "the worker to start")
        _wait(lambda: shutil.rmtree(home, ignore_errors=True) or not home.exists(), 10, "the home to go")
        rc = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = err.read_text(errors="replace")
    assert rc == 3, text
    assert "was removed" in text and str(home) in text and "Traceback" not in text


def test_the_worker_loop_stops_when_its_home_vanishes(tmp_path: Path):
    home = tmp_path / "home"
    store = JobStore(home)
    said: list[str] = []
    w = Worker(store, WorkerOptions(gpus=[0], poll_s=0.01, gpu_info=[], home_checks=2), launcher=lambda c: None,
               log=said.append)
    t = threading.Thread(target=lambda: said.append(repr(_run_catching(w))), daemon=True)
    t.start()
    time.sleep(0.2)
    assert t.is_alive()  # polling an existing home: no exit
    shutil.rmtree(home)
    t.join(10)
    assert not t.is_alive(), "the worker kept polling a removed home"
    assert any("was removed" in s for s in said), said
    store.close()


def _run_catching(w: Worker):
    try:
        return w.run()
    except EnvNotReadyError as e:
        return e


def test_a_worker_tied_to_its_parent_stops_when_the_pipe_closes(tmp_path: Path):
    store = JobStore(tmp_path / "home")
    said: list[str] = []
    w = Worker(store, WorkerOptions(gpus=[0], poll_s=0.01, gpu_info=[]), launcher=lambda c: None, log=said.append)
    r, wr = os.pipe()
    w.stop_with_parent(r)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    os.close(wr)  # what the kernel does when the parent dies, however
    t.join(10)
    assert not t.is_alive() and any("is gone" in s for s in said), said
    os.close(r)
    store.close()


def test_a_worker_started_by_localworker_watches_its_parent(monkeypatch):
    monkeypatch.setenv(STOP_WITH_PARENT_ENV, "stdin")
    assert parent_pipe() == 0 and STOP_WITH_PARENT_ENV not in os.environ  # no job process inherits it
    assert parent_pipe() is None  # a worker started any other way watches nothing


# -- `zlt mcp --data-root`: model paths fenced as `zlt serve` fences them -------------------------------------------

def test_mcp_fence_matches_serve_defaults(tmp_path: Path):
    pytest.importorskip("fastapi")
    from zlt.serve.app import ServeConfig

    home, data, extra = tmp_path / "home", tmp_path / "data", tmp_path / "models2"
    fence = mcp_fence(home, [data], [], [extra])
    served = ServeConfig(home=home, token="t", data_roots=[data], model_roots=[extra]).fence()
    assert fence.model_roots == served.model_roots == (home / "models", extra)
    assert fence.output_roots == served.output_roots
    unfenced = mcp_fence(home, [], [], [])  # the local user who launched the agent: any path, as the CLI
    assert (unfenced.data_roots, unfenced.output_roots, unfenced.model_roots) == (None, None, None)


@pytest.mark.train
def test_mcp_evaluate_with_a_clip_outside_is_refused_in_a_data_root_session(tmp_path: Path, zlt_home: Path,
                                                                            monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("mcp")
    from tests.fixtures.eval_fixtures import evaluable_artifact, tiny_clip
    from zlt.jobs import list_jobs
    from zlt.serve.mcp_server import call, make_tools

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)  # queue only
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    clip = tiny_clip(outside / "clip")  # a real, loadable CLIP: only the fence can refuse it
    art = evaluable_artifact(tmp_path / "jobs", zlt_home)
    tools = {t.name: t for t in make_tools(zlt_home, mcp_fence(zlt_home, [data], [], []))}
    result, is_error = call(tools["evaluate"], {"artifact_id": art, "clip": str(clip)})
    assert is_error and result["message"].startswith("evaluate.clip: "), result
    assert list_jobs(zlt_home) == []
