"""The SSE framing and the follow loop, driven by a fake job (no server, no sleeping)."""

from __future__ import annotations

import json

import anyio
import pytest

from zlt.serve.sse import StreamSettings, event_frames, format_event, resume_point


def ev(seq: int, kind: str = "progress", **extra) -> dict:
    return {"job_id": "j", "seq": seq, "ts": 1.0, "type": kind, **extra}


class FakeJob:
    """Events appear and the state changes on a script keyed by poll round."""

    def __init__(self, script: list[tuple[list[dict], str]]) -> None:
        self.script = script
        self.round = 0
        self.events: list[dict] = []
        self.state = "queued"

    async def read_events(self, after: int) -> list[dict]:
        return [e for e in self.events if e["seq"] > after]

    async def read_state(self) -> str:
        return self.state

    async def sleep(self, _s: float) -> None:
        if self.round < len(self.script):
            new, state = self.script[self.round]
            self.events += new
            self.state = state
        self.round += 1
        if self.round > 100:
            raise AssertionError("stream never ended")


def frames(job: FakeJob, after: int = 0, follow: bool = True, clock=None) -> list[str]:
    async def collect() -> list[str]:
        kwargs = {"clock": clock} if clock else {}
        settings = StreamSettings(poll_s=0, state_every_s=0, heartbeat_s=5)
        return [f async for f in event_frames(job.read_events, job.read_state, after, follow=follow,
                                              settings=settings, sleep=job.sleep, **kwargs)]

    return anyio.run(collect)


def seqs(out: list[str]) -> list[int]:
    return [int(f.split("\n")[0][4:]) for f in out if f.startswith("id: ")]


def test_format_event_is_one_sse_frame():
    text = format_event(ev(7, "checkpoint", path="a\nb"))
    lines = text.split("\n")
    assert lines[:2] == ["id: 7", "event: checkpoint"]
    assert json.loads(lines[2][len("data: "):])["path"] == "a\nb"  # newlines stay inside the JSON
    assert text.endswith("\n\n") and text.count("\n") == 4


@pytest.mark.parametrize("header,after,want", [(None, 0, 0), ("5", 0, 5), (" 12 ", 3, 12), ("x", 4, 4), (None, 9, 9),
                                               ("-1", 2, 2)])
def test_resume_point_prefers_last_event_id(header, after, want):
    assert resume_point(header, after) == want


def test_follow_ends_after_finished_once_the_job_is_final():
    job = FakeJob([([ev(1, "phase"), ev(2)], "running"), ([ev(3), ev(4, "finished", status="succeeded")], "succeeded")])
    out = frames(job)
    assert out[0] == "retry: 2000\n\n"
    assert seqs(out) == [1, 2, 3, 4]


def test_a_finished_run_that_is_retried_keeps_the_stream_open():
    job = FakeJob([
        ([ev(1), ev(2, "finished", status="failed")], "queued"),  # automatic retry: not the end
        ([], "queued"),
        ([ev(3, "phase"), ev(4), ev(5, "finished", status="succeeded")], "succeeded"),
    ])
    assert seqs(frames(job)) == [1, 2, 3, 4, 5]


def test_replay_after_a_seq_loses_nothing_and_repeats_nothing():
    job = FakeJob([])
    job.events = [ev(i) for i in range(1, 9)] + [ev(9, "finished", status="succeeded")]
    job.state = "succeeded"
    assert seqs(frames(job, after=4)) == [5, 6, 7, 8, 9]
    assert seqs(frames(job, after=9)) == []


def test_a_job_that_ends_without_a_finished_event_closes_the_stream():
    job = FakeJob([([], "queued"), ([], "cancelled")])  # cancelled while queued: no runner, no events
    assert seqs(frames(job)) == []
    assert job.round == 2


def test_no_follow_replays_and_closes():
    job = FakeJob([([ev(2)], "running")])
    job.events = [ev(1)]
    job.state = "running"
    assert seqs(frames(job, follow=False)) == [1]


def test_quiet_streams_get_keepalive_comments():
    t = iter(range(0, 1000, 3))
    job = FakeJob([([], "running")] * 4 + [([ev(1, "finished")], "succeeded")])
    out = frames(job, clock=lambda: float(next(t)))
    assert any(f.startswith(": keepalive") for f in out)
    assert seqs(out) == [1]
