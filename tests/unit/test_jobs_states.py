"""The job state machine: every transition in the table works and is recorded; every other one is refused."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.jobs_dialects import dialect, pg_server  # noqa: E402,F401
from tests.unit.jobs_fakes import FakeClock, new_job
from zlt.core.errors import BadInputError
from zlt.jobs.states import ALLOWED, TERMINAL, IllegalTransition, JobStatus, can_transition, parse_state
from zlt.jobs.store import JobStore

pytestmark = pytest.mark.usefixtures("dialect")


def force_state(store: JobStore, job_id: str, state: JobStatus) -> None:
    with store.tx() as db:
        db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state.value, job_id))


def history_len(store: JobStore, job_id: str) -> int:
    return len(store.history(job_id))


def test_job_status_is_a_str_enum():
    assert JobStatus.RUNNING == "running"
    assert [s.value for s in JobStatus] == ["queued", "preparing", "running", "succeeded", "failed", "cancelled"]
    assert f"{JobStatus.FAILED}" == "failed"


def test_table_covers_every_state_and_succeeded_is_final():
    assert set(ALLOWED) == set(JobStatus)
    assert ALLOWED[JobStatus.SUCCEEDED] == frozenset()
    for s in TERMINAL - {JobStatus.SUCCEEDED}:
        assert ALLOWED[s] == {JobStatus.QUEUED}, "failed/cancelled only go back to the queue (retry)"


PAIRS = list(itertools.product(JobStatus, JobStatus))


@pytest.mark.parametrize("src,dst", PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_every_pair_is_allowed_or_refused_by_the_store(tmp_path: Path, src: JobStatus, dst: JobStatus):
    clock = FakeClock()
    store = JobStore(tmp_path, clock=clock)
    store.create(new_job("j1"))
    force_state(store, "j1", src)
    before = history_len(store, "j1")
    clock.t += 5
    if can_transition(src, dst):
        row = store.transition("j1", dst, message="test")
        assert row["state"] == dst.value
        assert row["updated_at"] == clock.t
        hist = store.history("j1")
        assert len(hist) == before + 1
        assert (hist[-1]["from_state"], hist[-1]["to_state"], hist[-1]["ts"]) == (src.value, dst.value, clock.t)
        if dst in TERMINAL:
            assert row["ended_at"] == clock.t and row["lease_token"] is None
    else:
        with pytest.raises(IllegalTransition) as exc:
            store.transition("j1", dst, message="test")
        assert exc.value.exit_code == 2
        assert store.get("j1")["state"] == src.value, "a refused transition changes nothing"
        assert history_len(store, "j1") == before, "and records nothing"
    store.close()


def test_transition_with_a_stale_token_is_refused(tmp_path: Path):
    from zlt.jobs.store import LeaseLost

    store = JobStore(tmp_path, clock=FakeClock())
    store.create(new_job("j1"))
    claim = store.claim("w1", [0])
    assert claim is not None
    with pytest.raises(LeaseLost):
        store.transition("j1", JobStatus.RUNNING, token="not-the-token")
    assert store.get("j1")["state"] == "preparing"
    store.transition("j1", JobStatus.RUNNING, token=claim.token)
    assert store.get("j1")["state"] == "running"


def test_transition_refuses_unknown_columns(tmp_path: Path):
    store = JobStore(tmp_path, clock=FakeClock())
    store.create(new_job("j1"))
    with pytest.raises(ValueError):
        store.transition("j1", JobStatus.CANCELLED, state="succeeded")


def test_parse_state_names_the_choices():
    assert parse_state("Running") is JobStatus.RUNNING
    with pytest.raises(BadInputError) as exc:
        parse_state("done")
    assert "queued" in exc.value.hint


def test_concurrent_transitions_of_one_job_never_both_apply(tmp_path):
    """Two processes ending the same job at once (a runner finishing, a reaper or cancel): one wins, the other
    is refused. On PostgreSQL the transition reads the row FOR UPDATE; on SQLite BEGIN IMMEDIATE serialises."""
    import threading

    from zlt.jobs.states import IllegalTransition

    a, b = JobStore(tmp_path), JobStore(tmp_path)
    for i in range(15):
        a.create(new_job(f"j{i}"))
        force_state(a, f"j{i}", JobStatus.RUNNING)
        outcomes: list[str] = []
        go = threading.Barrier(2)

        def end(store, to, i=i, go=go, outcomes=outcomes):
            go.wait()
            try:
                store.transition(f"j{i}", to, expect=frozenset({JobStatus.RUNNING}))
                outcomes.append(to.value)
            except IllegalTransition:
                outcomes.append("refused")

        ts = [threading.Thread(target=end, args=(a, JobStatus.SUCCEEDED)),
              threading.Thread(target=end, args=(b, JobStatus.QUEUED))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert sorted(outcomes).count("refused") == 1, outcomes
        assert len([h for h in a.history(f"j{i}") if h["from_state"] == "running"]) == 1
    a.close()
    b.close()
