from zlt.core.events import Phase, Progress
from zlt.run.throttle import ProgressThrottle


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def prog(step, total=100, loss=0.5):
    return Progress(step=step, total=total, loss=loss)


def test_at_most_one_progress_per_interval_and_the_last_is_kept():
    clock, out = Clock(), []
    th = ProgressThrottle(out.append, 0.5, clock)
    for step in range(1, 11):  # ten steps within 0.09 s
        clock.t = step * 0.01
        th.push(prog(step))
    assert [e.step for e in out] == [1]
    clock.t = 0.7
    th.tick()
    assert [e.step for e in out] == [1, 10]


def test_other_events_flush_pending_progress_first():
    clock, out = Clock(), []
    th = ProgressThrottle(out.append, 0.5, clock)
    th.push(prog(1))
    th.push(prog(2))
    th.push(Phase("saving", "step 2"))
    assert out == [prog(1), prog(2), Phase("saving", "step 2")]


def test_last_step_goes_out_at_once_and_flush_sends_the_rest():
    clock, out = Clock(), []
    th = ProgressThrottle(out.append, 0.5, clock)
    th.push(prog(99))
    th.push(prog(100))
    assert [e.step for e in out] == [99, 100]
    th.push(prog(100, loss=0.4))  # a redraw with new numbers for the same step
    th.flush()
    assert out[-1].loss == 0.4


def test_identical_redraws_are_not_resent():
    clock, out = Clock(), []
    th = ProgressThrottle(out.append, 0.5, clock)
    th.push(prog(5))
    clock.t = 1.0
    th.push(prog(5))
    th.tick()
    th.flush()
    assert len(out) == 1
