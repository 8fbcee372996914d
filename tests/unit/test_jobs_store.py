"""The job store: claim order, GPU slots, leases and the reaper, cancel, migrations. Every test runs on
SQLite and on PostgreSQL (tests/jobs_dialects.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: F401
from tests.unit.jobs_fakes import FakeClock, new_job
from zlt.artifacts import tables as artifact_tables
from zlt.core.errors import NotFoundError
from zlt.core.kinds import JobKind
from zlt.db.connect import open_database
from zlt.db.dialect import Database, split_statements
from zlt.db.migrate import InTransaction, migrate
from zlt.jobs.db import MIGRATIONS, connect
from zlt.jobs.faults import INFRA_RETRY_CAP
from zlt.jobs.states import IllegalTransition, JobStatus
from zlt.jobs.store import JobStore

pytestmark = pytest.mark.usefixtures("dialect")


def raw_db(home: Path) -> Database:
    """The store's database without migrations (to build an old store)."""
    return open_database(home)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    s = JobStore(tmp_path, clock=clock, lease_ttl=30.0, pid_alive=lambda pid, started: False)
    yield s
    s.close()


def test_get_by_id_prefix_and_errors(store: JobStore):
    store.create(new_job("20250101-000000-aaaaaa"))
    store.create(new_job("20250101-000000-aabbbb"))
    assert store.get("20250101-000000-aaaa")["id"] == "20250101-000000-aaaaaa"
    with pytest.raises(NotFoundError, match="ambiguous"):
        store.get("20250101-000000-aa")
    with pytest.raises(NotFoundError) as exc:
        store.get("nope")
    assert "zlt jobs" in exc.value.hint


def test_claim_takes_highest_priority_then_oldest(store: JobStore, clock: FakeClock):
    for jid, prio in [("a", 0), ("b", 5), ("c", 0), ("d", 5)]:
        store.create(new_job(jid, priority=prio))
        clock.t += 1
    order = []
    while (claim := store.claim("w", [0])) is not None:
        order.append(claim.job_id)
        store.transition(claim.job_id, JobStatus.SUCCEEDED, token=claim.token)
    assert order == ["b", "d", "a", "c"]


def test_one_job_per_gpu_across_workers(store: JobStore):
    for i in range(4):
        store.create(new_job(f"j{i}"))
    c1 = store.claim("w1", [0, 1])
    c2 = store.claim("w2", [0, 1])
    assert c1 and c2 and c1.gpus != c2.gpus and {c1.gpus[0], c2.gpus[0]} == {0, 1}
    assert store.claim("w1", [0, 1]) is None, "both GPUs busy"
    assert store.claim("w3", [1]) is None
    store.transition(c1.job_id, JobStatus.FAILED, token=c1.token)
    c3 = store.claim("w3", [0, 1])
    assert c3 and c3.gpus == c1.gpus


def test_multi_gpu_job_waits_for_its_gpus_and_is_not_starved(store: JobStore, clock: FakeClock):
    store.create(new_job("small1"))
    clock.t += 1
    store.create(new_job("big", gpus_needed=2))
    clock.t += 1
    store.create(new_job("small2"))
    c = store.claim("w", [0, 1])
    assert c and c.job_id == "small1"
    assert store.claim("w", [0, 1]) is None, "big is next and needs both GPUs: small2 must not jump ahead"
    store.transition(c.job_id, JobStatus.SUCCEEDED, token=c.token)
    big = store.claim("w", [0, 1])
    assert big and big.job_id == "big" and big.gpus == [0, 1]


def test_job_needing_more_gpus_than_a_worker_has_is_left_for_another(store: JobStore, clock: FakeClock):
    store.create(new_job("huge", gpus_needed=4))
    clock.t += 1
    store.create(new_job("small"))
    c = store.claim("w", [0, 1])
    assert c and c.job_id == "small"
    assert store.get("huge")["state"] == "queued"


def test_cpu_jobs_run_one_at_a_time_per_worker_without_a_gpu(store: JobStore):
    store.create(new_job("cpu1", gpus_needed=0))
    store.create(new_job("cpu2", gpus_needed=0))
    store.create(new_job("gpu"))
    a = store.claim("w", [0])
    b = store.claim("w", [0])
    assert a and a.gpus == [] and b and b.job_id == "gpu"
    assert store.claim("w", [0]) is None


def test_claim_bumps_attempts_and_records_history(store: JobStore, clock: FakeClock):
    store.create(new_job("j"))
    c = store.claim("w", [3])
    row = store.get("j")
    assert c.attempt == 1 and row["attempts"] == 1 and row["gpus"] == "3" and row["started_at"] == clock.t
    assert row["lease_expires"] == clock.t + 30.0
    assert store.history("j")[-1]["message"].startswith("attempt 1 on gpu 3 by w")
    store.create(new_job("k"))  # a worker without an NVIDIA GPU (no memory known for any slot): the job runs on cpu
    store.claim("w2", [0], vram_gb={})
    assert store.history("k")[-1]["message"].startswith("attempt 1 on cpu by w2")


def test_heartbeat_renews_lease_and_reports_cancel(store: JobStore, clock: FakeClock):
    store.create(new_job("j"))
    c = store.claim("w", [0])
    clock.t += 20
    beat = store.heartbeat("j", c.token)
    assert beat.alive and not beat.cancel_requested
    assert store.get("j")["lease_expires"] == clock.t + 30
    store.request_cancel("j")
    assert store.heartbeat("j", c.token).cancel_requested
    assert not store.heartbeat("j", "other").alive


def test_reaper_requeues_abandoned_jobs_without_using_retries(tmp_path: Path, clock: FakeClock):
    """A lost lease is an infrastructure fault: requeued with a backoff, max_retries untouched, capped apart."""
    store = JobStore(tmp_path, clock=clock, lease_ttl=30.0, host="elsewhere", pid_alive=lambda p, s: True)
    store.create(new_job("j", max_retries=0))
    store.claim("w", [0])
    clock.t += 29
    assert store.reap() == [], "lease still valid"
    clock.t += 2
    assert store.reap() == [("j", JobStatus.QUEUED)]
    row = store.get("j")
    assert row["resume"] == 1 and row["auto_retries"] == 0 and row["infra_retries"] == 1
    assert row["lease_token"] is None and row["not_before"] > clock.t
    assert "no retry used" in store.history("j")[-1]["message"]
    assert store.claim("w", [0]) is None, "backing off"
    clock.t = row["not_before"]
    assert store.claim("w", [0]).attempt == 2
    store.transition("j", JobStatus.QUEUED, infra_retries=INFRA_RETRY_CAP)
    store.claim("w", [0])
    clock.t += 31
    assert store.reap() == [("j", JobStatus.FAILED)]
    row = store.get("j")
    assert row["error_cause"] == "abandoned" and row["ended_at"] == clock.t and row["auto_retries"] == 0
    assert "giving up" in store.history("j")[-1]["message"]


def test_reaper_on_same_host_trusts_process_liveness(tmp_path: Path, clock: FakeClock):
    alive = {"value": True}
    store = JobStore(tmp_path, clock=clock, lease_ttl=30.0, pid_alive=lambda p, s: alive["value"])
    store.create(new_job("j", max_retries=0))
    c = store.claim("w", [0])
    store.set_runner("j", c.token, 4242, 123.0)
    clock.t += 3600  # lease long expired (a suspended laptop), but the runner process still lives
    assert store.reap() == []
    alive["value"] = False  # SIGKILLed: reaped at once, no need to wait for the lease
    assert store.reap() == [("j", JobStatus.QUEUED)]
    assert "runner process 4242 is gone" in store.get("j")["error_message"]


def test_reaper_honours_a_pending_cancel(store: JobStore, clock: FakeClock):
    store.create(new_job("j", max_retries=3))
    store.claim("w", [0])
    store.request_cancel("j")
    clock.t += 60
    assert store.reap() == [("j", JobStatus.CANCELLED)]


def test_cancel_queued_running_and_finished(store: JobStore):
    store.create(new_job("q"))
    assert store.request_cancel("q")["state"] == "cancelled"
    assert store.request_cancel("q")["state"] == "cancelled", "cancelling twice is harmless"
    store.create(new_job("r"))
    c = store.claim("w", [0])
    row = store.request_cancel("r")
    assert row["state"] == "preparing" and row["cancel_requested"] == 1
    store.transition("r", JobStatus.SUCCEEDED, token=c.token)
    with pytest.raises(IllegalTransition):
        store.request_cancel("r")


def test_progress_writes_need_the_lease(store: JobStore):
    store.create(new_job("j"))
    c = store.claim("w", [0])
    assert store.update_progress("j", c.token, phase="training", progress={"step": 3, "total": 10},
                                 checkpoint=("/x/s_000000003.safetensors", 3))
    row = store.get("j")
    assert row["phase"] == "training" and row["last_checkpoint_step"] == 3
    assert not store.update_progress("j", "stale", phase="saving")
    assert store.get("j")["phase"] == "training"


def test_split_statements_keeps_statements_whole():
    script = "CREATE TABLE a (x);\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 1;\nEND;\n"
    assert len(split_statements(script)) == 2


def test_migrations_are_numbered_in_order():
    for migrations in (MIGRATIONS, artifact_tables.MIGRATIONS):
        names = [n for n, _ in migrations]
        assert names == sorted(names), "ascending (gaps are allowed)"
    numbers = [int(n[1:4]) for n, _ in MIGRATIONS + artifact_tables.MIGRATIONS]
    assert len(set(numbers)) == len(numbers), "one number space: the lists share the migrations table"


def test_an_old_store_is_upgraded_and_keeps_its_jobs(tmp_path: Path):
    """A store written before m003 (only m001/m002 applied) opens, migrates, and keeps its rows."""
    db = raw_db(tmp_path)
    db.execute(db.ddl("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"))
    for name, fn in [MIGRATIONS[0], artifact_tables.MIGRATIONS[0]]:
        fn(InTransaction(db))
        db.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    db.execute(
        "INSERT INTO jobs (id, name, state, created_at, updated_at, backend, spec_json, job_dir) "
        "VALUES ('old', 'style', 'queued', 1, 1, 'ai-toolkit', '{}', '/tmp/old')"
    )
    db.close()
    store = JobStore(tmp_path)
    applied = [r[0] for r in store.db.execute("SELECT name FROM migrations ORDER BY name")]
    assert applied == sorted([n for n, _ in MIGRATIONS] + [artifact_tables.MIGRATIONS[0][0]])
    row = store.get("old")
    assert row["state"] == "queued" and row["auto_retries"] == 0 and row["snapshot_json"] == "{}"
    assert store.claim("w", [0]).job_id == "old"


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from zlt.jobs import db as dbmod

    def broken(db):
        db.executescript("CREATE TABLE half (x INTEGER);\nCREATE TABLE half (x INTEGER);\n")

    monkeypatch.setattr(dbmod, "MIGRATIONS", [*dbmod.MIGRATIONS, ("m999_broken", broken)])
    with pytest.raises(Exception, match="half"):
        connect(tmp_path)
    raw = raw_db(tmp_path)
    assert not raw.table_exists("half")
    assert raw.execute("SELECT 1 FROM migrations WHERE name = 'm999_broken'").fetchone() is None
    monkeypatch.setattr(dbmod, "MIGRATIONS", [m for m in dbmod.MIGRATIONS if m[0] != "m999_broken"])
    assert migrate(raw, dbmod.MIGRATIONS) == []  # the real ones all went through


def test_rows_read_like_sqlite_rows_and_queue_position_counts(store: JobStore, clock: FakeClock):
    for jid in ("a", "b", "c"):
        store.create(new_job(jid))
        clock.t += 1
    row = store.get("c")
    assert row["id"] == row[0] == "c" and dict(row)["id"] == "c" and "state" in row.keys()
    (count,) = store.db.execute("SELECT COUNT(*) FROM jobs").fetchone()
    assert count == 3
    assert [store.queue_position(store.get(j)) for j in ("a", "b", "c")] == [1, 2, 3]
    c = store.claim("w", [0])
    store.transition(c.job_id, JobStatus.QUEUED, not_before=clock.t + 5)
    assert store.backing_off() == 1


def test_the_artifact_index_runs_on_the_same_store(store: JobStore, tmp_path: Path):
    """zlt/artifacts/store.py writes through connect(): the same SQL on both dialects, the same
    IntegrityError class for a duplicate id. The index writes only its own table; the job records its artifact
    through the job store (by id), and a deleted artifact's jobs are cleared the same way (zlt.flows.job_artifacts)."""
    from zlt.artifacts import store as index

    store.create(new_job("j"))
    row = {"id": "a1", "job_id": "j", "name": "s", "path": "/x/a1", "created_at": 1.0, "backend": "lightning",
           "meta": {"k": 1}}
    index.insert(tmp_path, row)
    assert store.get("j")["artifact_id"] is None  # the registry never writes the jobs table
    assert store.record_artifact("j", "a1", "/x/a1") and not store.record_artifact("gone", "a1", "/x/a1")
    assert index.id_taken(tmp_path, "a1") and not index.id_taken(tmp_path, "a2")
    with pytest.raises(FileExistsError):
        index.insert(tmp_path, row)
    assert store.get("j")["artifact_id"] == "a1"
    assert [r["meta"] for r in index.fetch_all(tmp_path)] == [{"k": 1}]
    index.delete(tmp_path, "a1")
    assert store.forget_artifact("a1") == 1
    assert index.fetch_all(tmp_path) == [] and store.get("j")["artifact_id"] is None


def _store_of_today(home: Path) -> Database:
    """A store as the code before the kind column left it: every migration up to m010 applied, from one list."""
    db = raw_db(home)
    db.execute(db.ddl("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"))
    old = dict(MIGRATIONS + artifact_tables.MIGRATIONS)
    for name in ("m001_jobs", "m002_artifacts", "m003_job_runtime", "m004_shared_store", "m010_artifact_versions"):
        old[name](InTransaction(db))
        db.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    for jid, backend, spec in (("t", "lightning", '{"name": "s"}'), ("g", "infer", '{"prompt": "a"}'),
                               ("e", "eval", '{"seeds": 2}')):
        db.execute("INSERT INTO jobs (id, name, state, created_at, updated_at, backend, spec_json, job_dir, "
                   "snapshot_json) VALUES (?, ?, 'queued', 1, 1, ?, ?, ?, '{}')", (jid, jid, backend, spec, f"/tmp/{jid}"))
        db.execute("INSERT INTO job_events (job_id, ts, to_state, message) VALUES (?, 1, 'queued', 'submitted')", (jid,))
    return db


def test_a_store_of_today_gets_the_kind_and_request_columns(tmp_path: Path):
    _store_of_today(tmp_path).close()
    store = JobStore(tmp_path)
    try:
        applied = {r[0] for r in store.db.execute("SELECT name FROM migrations")}
        assert applied == {n for n, _ in MIGRATIONS + artifact_tables.MIGRATIONS}
        t, g, e = (store.get(j) for j in "tge")
        assert (t["kind"], t["backend"], t["spec_json"], t["request_json"]) == ("train", "lightning", '{"name": "s"}', None)
        assert (g["kind"], g["backend"], g["spec_json"], g["request_json"]) == ("generate", None, None, '{"prompt": "a"}')
        assert (e["kind"], e["backend"], e["spec_json"], e["request_json"]) == ("evaluate", None, None, '{"seeds": 2}')
        assert [h["message"] for h in store.history("g")] == ["submitted"]  # the history still points at its job
        assert store.queue_position(t) == 3 and store.claim("w", [0]).job_id == "e"  # indexes and order intact
        store.create(new_job("n"))
        assert artifact_tables.connect(tmp_path).execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == 0
    finally:
        store.close()


def test_a_job_has_a_kind_and_a_request_not_a_spec(store: JobStore):
    assert store.create(new_job("t"))["kind"] == JobKind.TRAIN
    row = store.create(new_job("g", kind=JobKind.GENERATE, backend=None, spec_json=None, request={"prompt": "a"}))
    assert (row["kind"], row["backend"], row["spec_json"]) == ("generate", None, None)
    assert row["request_json"] == '{"prompt": "a"}'
    assert store.create(new_job("e", backend=None, spec_json=None), kind="evaluate")["kind"] == "evaluate"


def test_claim_here_creates_the_job_as_create_does(store: JobStore):
    c = store.claim_here("f", "fg", [0], new=new_job("f", min_vram_gb=40.0, kind=JobKind.TRAIN))
    row = store.get("f")
    assert (c.attempt, c.resume, row["state"], row["min_vram_gb"], row["kind"]) == (1, False, "preparing", 40.0, "train")
    assert [(h["from_state"], h["to_state"]) for h in store.history("f")] == [(None, "queued"), ("queued", "preparing")]


def test_claim_here_resumes_through_the_transition_table(store: JobStore):
    store.create(new_job("r"))
    c = store.claim("w", [0])
    store.transition("r", JobStatus.FAILED, token=c.token, error_cause="exit_code")
    again = store.claim_here("r", "fg", [1])
    row = store.get("r")
    assert again.resume and again.attempt == 2 and row["state"] == "preparing" and row["gpus"] == "1"
    assert row["error_cause"] is None and row["lease_token"] == again.token
    assert [h["to_state"] for h in store.history("r")][-2:] == ["queued", "preparing"]
    with pytest.raises(IllegalTransition) as exc:
        store.claim_here("r", "fg", [1])
    assert "resumed" in exc.value.hint


def test_refuse_requeues_through_the_transition_table(store: JobStore):
    store.create(new_job("x"))
    c = store.claim("w", [0])
    store.request_cancel("x")
    row = store.refuse("x", c.token, "dataset not visible")
    assert (row["state"], row["attempts"], row["lease_token"], row["gpus"]) == ("queued", 0, None, None)
    assert row["error_cause"] == "not_visible" and row["cancel_requested"] == 1  # a pending cancel stays pending
    assert store.history("x")[-1]["message"].startswith(f"refused by {store.host}")
