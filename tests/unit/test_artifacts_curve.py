"""Loss curves from progress events and from ai-toolkit's loss_log.db; summary and loss.png."""

from __future__ import annotations

import sys

import pytest

from tests.fixtures.artifact_jobs import write_loss_log
from zlt.run.curve import (
    Curve,
    curve_from_events,
    curve_from_jsonl,
    curve_from_loss_log,
    decimate,
    ema,
    load_curve,
    plot_loss,
    summarize,
)


def _progress(step, loss, lr=1e-4, it_s=2.5):
    return {"type": "progress", "step": step, "total": 100, "loss": loss, "lr": lr, "it_s": it_s}


def test_events_curve_later_attempt_wins_after_resume():
    events = [_progress(10, 0.5), _progress(20, 0.4), {"type": "resumed", "step": 10},
              _progress(20, 0.35, it_s=3.5), _progress(30, None, lr=5e-5), {"type": "phase", "phase": "saving"}]
    c = curve_from_events(events)
    assert c.source == "events"
    assert c.steps == [10, 20, 30] and c.loss == [0.5, 0.35, None] and c.lr == [1e-4, 1e-4, 5e-5]
    assert c.it_s == 2.5  # median of 2.5, 2.5, 3.5, 2.5


def test_nan_and_inf_losses_are_dropped():
    c = curve_from_events([_progress(1, float("nan")), _progress(2, float("inf")), _progress(3, 0.2)])
    assert c.loss == [None, None, 0.2]
    assert summarize(c)["final_loss"] == 0.2 and summarize(c)["points"] == 1


def test_loss_log_db(tmp_path):
    write_loss_log(tmp_path / "loss_log.db", list(range(1, 51)))
    c = curve_from_loss_log(tmp_path / "loss_log.db")
    assert c.source == "loss_log.db" and c.steps[0] == 1 and c.steps[-1] == 50
    assert c.loss[0] == pytest.approx(0.5 / 1.01) and c.lr[-1] == 1e-4
    assert not (tmp_path / "loss_log.db-wal").exists()  # read from a copy: the trainer's folder is untouched


def test_load_curve_prefers_loss_log_and_its_own_speed(tmp_path):
    write_loss_log(tmp_path / "out" / "loss_log.db", [1, 2, 3])  # wall_time one second apart
    curve, notes = load_curve([_progress(3, 0.9, it_s=4.0)], [tmp_path / "out"])
    assert curve.source == "loss_log.db" and curve.it_s == 1.0 and notes == []
    curve, _ = load_curve([_progress(3, 0.9)], [tmp_path / "nothing-here"])
    assert curve.source == "events"


def test_unreadable_loss_log_falls_back_with_a_note(tmp_path):
    (tmp_path / "loss_log.db").write_bytes(b"this is not sqlite" * 100)
    curve, notes = load_curve([_progress(5, 0.3)], [tmp_path])
    assert curve.source == "events"
    assert len(notes) == 1 and "unreadable loss log" in notes[0]


def test_summary_and_decimate():
    c = Curve(source="events", steps=list(range(1, 1001)), loss=[1.0 / s for s in range(1, 1001)], lr=[1e-4] * 1000)
    s = summarize(c)
    assert s["first_loss"] == 1.0 and s["final_loss"] == pytest.approx(0.001) and s["min_step"] == 1000
    assert s["final_loss_avg"] == pytest.approx(sum(1.0 / k for k in range(901, 1001)) / 100)
    small = decimate(c, limit=100)
    assert len(small) == 100 and small.steps[0] == 1 and small.steps[-1] == 1000
    assert ema([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])
    assert summarize(Curve())["points"] == 0


def test_plot_writes_png(tmp_path):
    c = Curve(source="events", steps=list(range(1, 51)), loss=[1.0 / s for s in range(1, 51)], lr=[1e-4] * 50)
    assert plot_loss(c, tmp_path / "loss.png", "t") is None
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no loss values" in plot_loss(Curve(), tmp_path / "none.png", "t")
    assert not (tmp_path / "none.png").exists()


def test_plot_without_matplotlib_is_a_note(tmp_path, monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without the [plot] extra sees
    c = Curve(source="events", steps=[1, 2], loss=[0.5, 0.4], lr=[None, None])
    note = plot_loss(c, tmp_path / "loss.png", "t")
    assert note and "matplotlib" in note and "zlt[plot]" in note
    assert not (tmp_path / "loss.png").exists()


def _jsonl(path, rows):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_series_trainer_log_first_then_runner_series_then_events(tmp_path):
    """Issue 19.6 / 13.2: the full per-step log, not 3 throttled events; the LR peak is the logged one."""
    events = [_progress(1, 0.9), _progress(30, 0.5), _progress(60, 0.3)]
    lrs = [min(s / 10, 1.0) * 1e-4 * (0.5 if s > 40 else 1) for s in range(1, 61)]
    _jsonl(tmp_path / "job" / "progress.jsonl",
           [{"step": s, "loss": 1.0 - s / 100, "lr": None, "t": 100 + s / 10, "attempt": 1} for s in range(1, 61)])
    curve, _ = load_curve(events, [tmp_path / "out"], tmp_path / "job")
    assert curve.source == "progress.jsonl" and len(curve) == 60
    assert curve.it_s == pytest.approx(10.0)  # 59 steps in 5.9 s
    _jsonl(tmp_path / "out" / "loss_log.jsonl",  # zlt/trainer/loop.py: t is seconds since the run started
           [{"step": s, "loss": 2.0 - s / 100, "lr": lrs[s - 1], "epoch": 0, "t": s * 0.5} for s in range(1, 61)])
    curve, _ = load_curve(events, [tmp_path / "out"], tmp_path / "job")
    assert curve.source == "loss_log.jsonl" and curve.steps == list(range(1, 61))
    assert max(v for v in curve.lr if v is not None) == 1e-4 and curve.lr[9] == 1e-4
    assert curve.it_s == pytest.approx(2.0)
    s = summarize(curve)
    assert s["first_loss"] == 1.99 and s["final_loss"] == pytest.approx(1.4) and s["points"] == 60


def test_average_rate_ignores_the_gap_between_attempts(tmp_path):
    rows = [{"step": s, "loss": 0.5, "t": 1000 + s, "attempt": 1} for s in range(1, 11)]  # 1 it/s
    rows += [{"step": s, "loss": 0.4, "t": 9000 + (s - 8) / 3, "attempt": 2} for s in range(8, 21)]  # 3 it/s
    curve = curve_from_jsonl(_jsonl(tmp_path / "progress.jsonl", rows), "progress.jsonl")
    assert curve.it_s == pytest.approx(21 / 13, abs=1e-4)  # (9 + 12) steps in (9 + 4) seconds
    assert curve.loss[curve.steps.index(9)] == 0.4  # the later attempt wins


def test_nonfinite_losses_are_recorded_as_steps(tmp_path):
    rows = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": None, "loss_nonfinite": True}, {"step": 3, "loss": 0.4}]
    curve = curve_from_jsonl(_jsonl(tmp_path / "loss_log.jsonl", rows))
    assert curve.loss == [0.5, None, 0.4] and curve.nonfinite_steps == [2]
