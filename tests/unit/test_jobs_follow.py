"""`logs -f`: incremental reads, partial lines, the runner's rotation on a retry, and the stop condition."""

from __future__ import annotations

import os
from pathlib import Path

from zlt.jobs.follow import follow_bytes, follow_events


class Script:
    """Runs one step of a scripted writer on every poll sleep; `done` after the last step."""

    def __init__(self, steps):
        self.steps = list(steps)

    def sleep(self, _s: float) -> None:
        if self.steps:
            self.steps.pop(0)()

    def done(self) -> bool:
        return not self.steps


def test_follow_reads_new_bytes_across_rotation(tmp_path: Path):
    log = tmp_path / "train.log"
    log.write_bytes(b"attempt 1 line 1\n")

    def append(data: bytes):
        return lambda: log.open("ab").write(data)

    def rotate():
        os.replace(log, tmp_path / "train.log.1")
        log.write_bytes(b"attempt 2 line 1\n")

    script = Script([append(b"attempt 1 line 2\nparti"), append(b"al\n"), rotate, append(b"attempt 2 done\n")])
    got = b"".join(follow_bytes(log, script.done, poll_s=0, sleep=script.sleep))
    assert got == b"attempt 1 line 1\nattempt 1 line 2\npartial\nattempt 2 line 1\nattempt 2 done\n"


def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path):
    log = tmp_path / "train.log"
    script = Script([lambda: None, lambda: log.write_bytes(b"hello\n")])
    assert b"".join(follow_bytes(log, script.done, poll_s=0, sleep=script.sleep)) == b"hello\n"


def test_not_following_prints_what_is_there_and_stops(tmp_path: Path):
    log = tmp_path / "train.log"
    log.write_bytes(b"x\ny")
    assert b"".join(follow_bytes(log, lambda: True, poll_s=0, sleep=lambda s: None)) == b"x\ny"
    assert list(follow_bytes(tmp_path / "none.log", lambda: True, sleep=lambda s: None)) == []


def test_follow_events_yields_complete_lines_once(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"seq": 1, "type": "phase"}\n{"seq": 2, "ty')
    script = Script([lambda: path.open("ab").write(b'pe": "progress"}\nnot json\n{"seq": 3, "type": "finished"}\n')])
    evs = list(follow_events(path, script.done, poll_s=0, sleep=script.sleep))
    assert [e["seq"] for e in evs] == [1, 2, 3]
    assert [e["seq"] for e in follow_events(path, lambda: True, after_seq=2, sleep=lambda s: None)] == [3]
