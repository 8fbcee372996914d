"""The job commands as an agent calls them (real CLI in a subprocess), without running a trainer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_zlt

CONTRACT_KEYS = {
    "job_id", "name", "state", "phase", "step", "total", "percent", "loss", "lr", "it_s", "eta_s", "attempts",
    "max_retries", "priority", "backend", "profile", "created_at", "started_at", "ended_at", "last_checkpoint",
    "artifact_id", "artifact_path", "error_cause", "error_message", "job_dir",
}


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    from PIL import Image

    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (0, i * 100, 0)).save(ds / f"{i}.png")
    p = tmp_path / "spec.yaml"
    p.write_text(
        "name: clitest\nmodel: {base: {name: zlt/tiny-zimage}}\ndataset: {path: ds, resolution: 64}\n"
        "training: {max_steps: 10, warmup_steps: 0}\noutput: {save: {every: 5}}\n"
    )
    return p


def jobs_json(*args: str) -> list[dict]:
    r = run_zlt("jobs", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_submit_prints_the_job_id_at_once_and_queues_it(spec_path: Path):
    t0 = time.monotonic()
    r = run_zlt("submit", str(spec_path), "--no-worker", "--priority", "3")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    jid = r.stdout.strip()
    assert len(jid.splitlines()) == 1 and jid.count("-") == 2
    assert elapsed < 3.0, f"submit took {elapsed:.2f}s"  # the bench holds the real target (<= 3x zlt --help)
    st = json.loads(run_zlt("status", jid, "--json").stdout)
    assert CONTRACT_KEYS <= set(st)
    assert (st["job_id"], st["state"], st["priority"], st["backend"]) == (jid, "queued", 3, "lightning")
    human = run_zlt("status", jid)
    assert human.returncode == 0 and "queued" in human.stdout and "position 1 in the queue" in human.stdout
    assert "waiting: no live worker (start one with 'zlt worker'" in human.stdout  # said once, by the status
    assert "no worker is running" not in human.stderr


def test_a_bad_spec_exits_2_and_queues_nothing(spec_path: Path, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec_path.read_text() + "trainig: {}\n")
    r = run_zlt("submit", str(bad), "--json")
    assert r.returncode == 2
    err = json.loads(r.stdout)
    assert err["ok"] is False and err["errors"][0]["path"] == "trainig"
    assert "training" in err["errors"][0]["hint"]
    r = run_zlt("submit", str(spec_path), "--set", "dataset.path=/does/not/exist")
    assert r.returncode == 2 and "dataset.path" in r.stderr
    r = run_zlt("submit", str(spec_path), "--backend", "musubi")
    assert r.returncode == 2 and "tiny test model" in r.stderr
    assert jobs_json() == []


def test_jobs_filters_and_limits(spec_path: Path):
    ids = [run_zlt("submit", str(spec_path), "--no-worker").stdout.strip() for _ in range(3)]
    assert [j["job_id"] for j in jobs_json()] == ids[::-1]
    assert len(jobs_json("--limit", "2")) == 2
    assert run_zlt("cancel", ids[0], "--json").returncode == 0
    assert [j["job_id"] for j in jobs_json("--state", "cancelled")] == [ids[0]]
    assert jobs_json("--state", "running") == []
    r = run_zlt("jobs", "--state", "finished")
    assert r.returncode == 2 and "queued, preparing" in r.stderr
    table = run_zlt("jobs", env={"COLUMNS": "200"})
    assert table.returncode == 0 and ids[1] in table.stdout and "cancelled" in table.stdout


def test_cancel_queued_then_retry_then_refusals(spec_path: Path):
    jid = run_zlt("submit", str(spec_path), "--no-worker").stdout.strip()
    r = run_zlt("cancel", jid, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "cancelled"
    r = run_zlt("retry", jid, "--no-worker", "--json")
    assert r.returncode == 0
    st = json.loads(r.stdout)
    assert st["state"] == "queued"
    r = run_zlt("retry", jid, "--no-worker", "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["error"] == "illegal_transition"
    hist = json.loads(run_zlt("status", jid, "--json", "--history").stdout)["history"]
    assert [h["to_state"] for h in hist] == ["queued", "cancelled", "queued"]


def test_unknown_job_is_exit_2_everywhere():
    for cmd in (["status"], ["logs"], ["cancel"], ["retry"], ["logs", "--events"]):
        r = run_zlt(*cmd, "20990101-000000-abcdef")
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "no job" in r.stderr and "Traceback" not in r.stderr


def test_logs_before_the_trainer_starts(spec_path: Path):
    jid = run_zlt("submit", str(spec_path), "--no-worker").stdout.strip()
    r = run_zlt("logs", jid)
    assert r.returncode == 0 and "no trainer log yet" in r.stderr
    r = run_zlt("logs", jid, "--json")
    assert json.loads(r.stdout)["text"] == ""
    r = run_zlt("logs", jid, "--events", "--json")
    assert r.returncode == 0 and r.stdout == ""


def test_worker_rejects_bad_gpu_lists():
    r = run_zlt("worker", "--gpus", "0,x", "--once")
    assert r.returncode == 2 and "--gpus" in r.stderr


def test_concurrent_submits_never_lose_or_duplicate_a_job(spec_path: Path):
    n = 20
    procs = [
        subprocess.Popen([sys.executable, "-m", "zlt", "submit", str(spec_path), "--no-worker"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == n
    assert sorted(j["job_id"] for j in jobs_json("--limit", "100")) == sorted(ids)
