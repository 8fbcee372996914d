"""Many workers on many hosts: GPU memory and count, per-host GPU ids, jobs no worker can take, hosts
that cannot see a job's files, concurrent claims. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: F401
from tests.unit.jobs_fakes import FakeClock, new_job
from zlt.jobs.api import job_status
from zlt.jobs.placement import slots_for, unseen_paths, why_waiting
from zlt.jobs.states import JobStatus
from zlt.jobs.store import JobStore

pytestmark = pytest.mark.usefixtures("dialect")

A100 = [{"index": 0, "name": "NVIDIA A100-SXM4-80GB", "vram_gb": 80.0}]
L4X2 = [{"index": 0, "name": "NVIDIA L4", "vram_gb": 24.0}, {"index": 1, "name": "NVIDIA L4", "vram_gb": 24.0}]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def on(home: Path, host: str, clock: FakeClock) -> JobStore:
    return JobStore(home, clock=clock, host=host, pid_alive=lambda p, s: True)


def vram(info: list[dict]) -> dict[int, float]:
    return {g["index"]: g["vram_gb"] for g in info}


def test_min_vram_goes_to_a_worker_with_a_gpu_that_big(tmp_path: Path, clock: FakeClock):
    small, big = on(tmp_path, "l4-box", clock), on(tmp_path, "a100-box", clock)
    small.create(new_job("needs48", min_vram_gb=48.0))
    assert small.claim("w-l4", [0, 1], vram_gb=vram(L4X2)) is None, "24 GiB GPUs never take a 48 GiB job"
    c = big.claim("w-a100", [0], vram_gb=vram(A100))
    assert c and c.job_id == "needs48" and big.get("needs48")["host"] == "a100-box"


def test_gpu_ids_are_per_host(tmp_path: Path, clock: FakeClock):
    a, b = on(tmp_path, "a", clock), on(tmp_path, "b", clock)
    a.create(new_job("j1"))
    a.create(new_job("j2"))
    c1, c2 = a.claim("wa", [0]), b.claim("wb", [0])
    assert c1 and c2 and c1.gpus == c2.gpus == [0], "GPU 0 of host a and GPU 0 of host b are different GPUs"


def test_two_gpu_job_waits_for_one_host_with_two(tmp_path: Path, clock: FakeClock):
    a, b, c = on(tmp_path, "a", clock), on(tmp_path, "b", clock), on(tmp_path, "c", clock)
    a.create(new_job("pair", gpus_needed=2))
    assert a.claim("wa", [0]) is None and b.claim("wb", [0]) is None, "two hosts of one GPU are not two GPUs"
    got = c.claim("wc", [0, 1])
    assert got and got.gpus == [0, 1]


def test_status_says_why_a_job_no_live_worker_can_take_waits(tmp_path: Path, clock: FakeClock):
    store = on(tmp_path, "l4-box", clock)
    row = store.create(new_job("needs48", min_vram_gb=48.0))
    assert "no live worker" in why_waiting(row, store.live_workers(), clock.t)
    store.register_worker("w-l4", 1, [0, 1], L4X2)
    assert why_waiting(row, store.live_workers(), clock.t) == "waiting: no worker has a GPU with >= 48 GiB"
    pair = store.create(new_job("pair", gpus_needed=2, min_vram_gb=48.0))
    assert why_waiting(pair, store.live_workers(), clock.t) == "waiting: no worker has 2 GPUs with >= 48 GiB on one host"
    four = store.create(new_job("four", gpus_needed=4))
    assert why_waiting(four, store.live_workers(), clock.t) == "waiting: no worker has 4 GPUs on one host"
    ok = store.create(new_job("fits"))
    assert why_waiting(ok, store.live_workers(), clock.t) is None
    on(tmp_path, "a100-box", clock).register_worker("w-a100", 2, [0], A100)
    assert why_waiting(store.get("needs48"), store.live_workers(), clock.t) is None
    clock.t += 31  # both stopped heartbeating: not live any more
    assert "no live worker" in why_waiting(row, store.live_workers(), clock.t)


def test_job_status_carries_the_waiting_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = JobStore(tmp_path)
    store.register_worker("w-l4", 1, [0, 1], L4X2)
    store.create(new_job("needs48", min_vram_gb=48.0))
    st = job_status(tmp_path, "needs48")
    assert st["state"] == "queued" and st["waiting"] == "waiting: no worker has a GPU with >= 48 GiB"


def test_a_host_that_cannot_see_the_dataset_refuses_and_another_takes_it(tmp_path: Path, clock: FakeClock):
    a, b = on(tmp_path, "a", clock), on(tmp_path, "b", clock)
    a.register_worker("wa", 1, [0])
    a.create(new_job("j", max_retries=0))
    c = a.claim("wa", [0])
    row = a.refuse("j", c.token, "dataset path /mnt/ds: not visible on host a")
    assert row["state"] == "queued" and row["attempts"] == 0 and row["auto_retries"] == 0
    assert a.claim("wa", [0]) is None, "host a does not take it again"
    assert "refused by a" in why_waiting(row, a.live_workers(), clock.t)
    assert "dataset path /mnt/ds" in why_waiting(row, a.live_workers(), clock.t)
    got = b.claim("wb", [0])
    assert got and got.job_id == "j" and got.attempt == 1


def test_unseen_paths_names_dataset_and_local_model(tmp_path: Path):
    (tmp_path / "ds").mkdir()
    spec = '{"dataset": {"path": "%s"}, "model": {"base": {"name": "/nope/model", "source": "local", "dit": null}}}'
    assert unseen_paths(spec % (tmp_path / "ds")) == ["model path /nope/model"]
    assert unseen_paths(spec % "/nope/ds")[0] == "dataset path /nope/ds"


def test_slots_for_keeps_unknown_sizes():
    assert slots_for([0, 1], None, 48) == [0, 1], "no NVML: plain slots are not judged by size"
    assert slots_for([0, 1], {0: 24.0, 1: 80.0}, 48) == [1]


def test_concurrent_claims_from_many_hosts_take_each_job_once(tmp_path: Path):
    JobStore(tmp_path).close()  # migrate once
    seed = JobStore(tmp_path)
    for i in range(40):
        seed.create(new_job(f"j{i:02d}", gpus_needed=0))
    taken: list[str] = []
    lock = threading.Lock()

    def work(host: str) -> None:
        store = JobStore(tmp_path, host=host)
        try:
            while (c := store.claim(f"w-{host}", [0], cpu_slots=100)) is not None:
                with lock:
                    taken.append(c.job_id)
                store.transition(c.job_id, JobStatus.SUCCEEDED, token=c.token)
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(f"h{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == [f"j{i:02d}" for i in range(40)], "every job exactly once"
    assert {r["state"] for r in seed.rows(limit=100)} == {"succeeded"}


def test_each_host_ends_only_its_own_leftover_trainers(tmp_path: Path, clock: FakeClock, monkeypatch):
    """A job requeued elsewhere by its lease may leave a trainer on its old host; that host's next sweep ends
    it. A trainer another host id started (same machine: containers, this test) is left alone."""
    import os
    import subprocess
    import sys

    from zlt.jobs.orphans import sweep_host

    monkeypatch.setenv("ZLT_JOBS_ROOT", str(tmp_path / "jobs"))
    store = on(tmp_path, "a", clock)
    jdir = tmp_path / "jobs" / "j1"
    jdir.mkdir(parents=True)
    store.create(new_job("j1", job_dir=str(jdir)))  # queued: any trainer of it is a leftover
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)", str(jdir / "render" / "config.yaml")]
    mine = subprocess.Popen(sleeper, env={**os.environ, "ZLT_HOST_ID": "a"}, start_new_session=True)
    theirs = subprocess.Popen(sleeper, env={**os.environ, "ZLT_HOST_ID": "b"}, start_new_session=True)
    try:
        for _ in range(50):  # the interpreter has replaced the fork's command line
            if all(str(jdir) in " ".join(open(f"/proc/{p.pid}/cmdline").read().split("\0")) for p in (mine, theirs)):
                break
            import time

            time.sleep(0.05)
        assert sweep_host(store) == {"j1": [mine.pid]}
        assert mine.wait(10) is not None and theirs.poll() is None
    finally:
        for p in (mine, theirs):
            p.kill()
            p.wait()


def test_shared_roots_for_job_folders_uploads_and_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from zlt.core.paths import default_registry_dir, job_dir, uploads_dir

    home = tmp_path / "home"
    assert job_dir(home, "j") == home / "jobs" / "j" and uploads_dir(home) == home / "serve" / "uploads"
    monkeypatch.setenv("ZLT_JOBS_ROOT", str(tmp_path / "shared" / "jobs"))
    monkeypatch.setenv("ZLT_REGISTRY_ROOT", str(tmp_path / "shared" / "artifacts"))
    assert job_dir(home, "j") == tmp_path / "shared" / "jobs" / "j"
    assert uploads_dir(home) == tmp_path / "shared" / "jobs" / "_uploads", "uploads every worker host can see"
    assert default_registry_dir(home) == tmp_path / "shared" / "artifacts"


def test_list_workers_shows_hosts_gpus_and_current_jobs(tmp_path: Path):
    from zlt.jobs.api import list_workers
    from zlt.jobs.display import workers_table

    a, b = JobStore(tmp_path, host="gpu-01"), JobStore(tmp_path, host="gpu-02")
    a.register_worker("gpu-01:11:aa", 11, [0, 1], L4X2)
    b.register_worker("gpu-02:22:bb", 22, [0], A100)
    b.register_worker("gone:33:cc", 33, [0])
    b.unregister_worker("gone:33:cc")
    a.create(new_job("j1"))
    a.claim("gpu-01:11:aa", [0, 1], vram_gb=vram(L4X2))
    found = list_workers(tmp_path)
    assert [w["worker_id"] for w in found] == ["gpu-01:11:aa", "gpu-02:22:bb"], "stopped workers are not listed"
    assert found[0]["gpus"][1] == {"index": 1, "name": "NVIDIA L4", "vram_gb": 24.0}
    assert found[0]["jobs"] == [{"job_id": "j1", "name": "s", "state": "preparing", "gpus": [0]}]
    table = workers_table(found).splitlines()
    assert table[0].split() == ["WORKER", "HOST", "GPU", "NAME", "VRAM", "JOB", "STATE"]
    assert "j1" in table[1] and "24 GiB" in table[1] and table[2].rstrip().endswith("idle")
    assert "NVIDIA A100-SXM4-80GB" in table[3] and "80 GiB" in table[3]
