"""Event lines on stdout: the runner's schema, throttled progress, nothing else on stdout."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from zlt.core.events import Progress, event_from_dict
from zlt.trainer.emit import EventWriter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_progress_is_throttled_but_first_last_and_forced_show():
    buf, clock = io.StringIO(), Clock()
    ev = EventWriter(buf, interval_s=0.5, clock=clock)
    ev.start_training(10)
    for step in range(11, 31):
        clock.t += 0.1  # 10 it/s
        ev.progress(step, 30, 0.5, 1e-4, force=step == 17)
    steps = [d["step"] for d in lines(buf)]
    assert steps[0] == 11 and steps[-1] == 30 and 17 in steps
    assert len(steps) <= 2 + 1 + 20 * 0.1 / 0.5 + 1
    last = lines(buf)[-1]
    assert last["type"] == "progress" and last["total"] == 30 and last["eta_s"] == 0.0
    assert abs(last["it_s"] - 10.0) < 0.01
    assert isinstance(event_from_dict(last), Progress)


def test_events_have_no_identity_fields_and_parse_back():
    buf = io.StringIO()
    ev = EventWriter(buf)
    ev.phase("training", "go")
    ev.checkpoint("/o/x_000000010.safetensors", 10)
    ev.resumed(10, "/o/state/x_000000010.json")
    ev.warning("careful")
    ev.oom("CUDA out of memory")
    ev.error("boom", ["Traceback", "x"])
    ev.sample("/o/samples/a.png", 10)
    out = lines(buf)
    assert [d["type"] for d in out] == ["phase", "checkpoint", "resumed", "warning", "oom", "error", "sample"]
    for d in out:
        assert not {"job_id", "seq", "ts"} & set(d)
        assert event_from_dict(d) is not None
    assert out[4]["fatal"] is True


def test_disabled_writer_is_silent():
    buf = io.StringIO()
    ev = EventWriter(buf, enabled=False)
    ev.phase("training")
    ev.progress(1, 2, 0.1, 0.1)
    assert buf.getvalue() == ""


def test_take_stdout_sends_stray_prints_to_stderr():
    code = ("from zlt.trainer.emit import EventWriter, take_stdout\n"
            "ev = EventWriter(take_stdout())\nprint('stray text from a library')\nev.warning('w')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines() == [json.dumps({"message": "w", "type": "warning"})]
    assert "stray text from a library" in r.stderr
