"""The supervisor against real child processes: pipes, stop ladder, orphans (checked with psutil)."""

import io
import sys
import textwrap
import threading
import time

import psutil
import pytest

from zlt.run.supervise import StopControl, supervise

PY = sys.executable
pytestmark = pytest.mark.serial  # grace periods of a fraction of a second: timing matters


def run(code, **kw):
    lines = []
    log = io.BytesIO()
    res = supervise([PY, "-c", textwrap.dedent(code)], on_lines=lambda ls, s: lines.extend((s, x) for x in ls),
                    log=log, **kw)
    return res, lines, log.getvalue()


def test_large_output_on_both_pipes_without_deadlock():
    code = """
    import sys
    for i in range(20000):
        sys.stdout.write(f"out {i} " + "x" * 100 + "\\n")
        sys.stderr.write(f"err {i} " + "y" * 100 + "\\r")
    sys.stdout.write("no newline at the end")
    """
    res, lines, log = run(code)
    assert res.returncode == 0
    out = [x for s, x in lines if s == "stdout"]
    err = [x for s, x in lines if s == "stderr"]
    assert len(out) == 20001 and out[-1] == "no newline at the end"
    assert len(err) == 20000 and err[-1].startswith("err 19999")
    assert len(log) == sum(len(f"out {i} ") + 101 + len(f"err {i} ") + 101 for i in range(20000)) + 21


WAIT_FOR_SIGNAL = """
import signal, sys, time
{setup}
print("ready", flush=True)
try:
    time.sleep(30)
except KeyboardInterrupt:
    print("got SIGINT", flush=True)
    sys.exit(0)
"""


def stop_after(delay):
    ev = threading.Event()
    threading.Timer(delay, ev.set).start()
    return ev


def test_sigint_is_enough_for_a_well_behaved_trainer():
    res, lines, _ = run(WAIT_FOR_SIGNAL.format(setup=""), control=StopControl(stop=stop_after(0.3)), grace_s=5)
    assert res.signals == ["SIGINT"] and res.stop_reason == "cancelled" and res.returncode == 0
    assert ("stdout", "got SIGINT") in lines


def test_ladder_sigterm_then_sigkill():
    setup = "signal.signal(signal.SIGINT, signal.SIG_IGN)"
    res, _, _ = run(WAIT_FOR_SIGNAL.format(setup=setup), control=StopControl(stop=stop_after(0.2)), grace_s=0.3)
    assert res.signals == ["SIGINT", "SIGTERM"] and res.returncode == -15
    setup = "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    t0 = time.monotonic()
    res, _, _ = run(WAIT_FOR_SIGNAL.format(setup=setup), control=StopControl(stop=stop_after(0.2)), grace_s=0.3,
                    term_s=0.3)
    assert res.signals == ["SIGINT", "SIGTERM", "SIGKILL"] and res.returncode == -9
    assert time.monotonic() - t0 < 5


def test_a_save_in_progress_delays_the_sigint():
    started = time.monotonic()
    res, _, _ = run(WAIT_FOR_SIGNAL.format(setup=""), control=StopControl(stop=stop_after(0.1)), grace_s=5,
                    busy=lambda: time.monotonic() - started < 1.0)
    assert res.signals == ["SIGINT"] and res.duration_s >= 1.0


def test_force_skips_the_grace():
    setup = "signal.signal(signal.SIGINT, signal.SIG_IGN)"
    force = threading.Event()
    force.set()
    res, _, _ = run(WAIT_FOR_SIGNAL.format(setup=setup), control=StopControl(stop=stop_after(0.1), force=force),
                    grace_s=60)
    assert res.signals == ["SIGINT", "SIGTERM"] and res.duration_s < 10


def test_deadline_and_cancel_file(tmp_path):
    res, _, _ = run(WAIT_FOR_SIGNAL.format(setup=""), control=StopControl(deadline=time.monotonic() + 0.3))
    assert res.stop_reason == "timeout" and res.signals == ["SIGINT"]
    flag = tmp_path / "cancel.request"
    threading.Timer(0.3, flag.touch).start()
    res, _, _ = run(WAIT_FOR_SIGNAL.format(setup=""), control=StopControl(cancel_file=flag))
    assert res.stop_reason == "cancelled"


def test_no_orphans_after_exit_even_with_setsid_or_held_pipes():
    code = """
    import os, subprocess, sys, time
    same = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    detached = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("pids", same.pid, detached.pid, flush=True)
    time.sleep(1.5)  # let the supervisor see both
    """
    res, lines, _ = run(code)
    pids = [int(p) for p in next(x for _, x in lines if x.startswith("pids")).split()[1:]]
    assert res.returncode == 0 and res.swept >= 1
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_no_orphans_after_a_stop():
    code = """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"])
    print("child", child.pid, flush=True)
    time.sleep(60)
    """
    res, lines, _ = run(code, control=StopControl(stop=stop_after(1.3)), grace_s=0.5, term_s=0.5)
    pid = int(next(x for _, x in lines if x.startswith("child")).split()[1])
    assert res.stop_reason == "cancelled"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_missing_program_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        supervise([str(tmp_path / "nope")], on_lines=lambda ls, s: None)


def test_a_trainer_can_be_stopped_with_sigint_even_when_zlt_ignores_it():
    """zlt started as a shell's background job (SIGINT ignored, and inherited across exec) still stops its
    trainer gracefully: the child gets SIGINT back at its default."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are set from the main thread only")
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        res, lines, _ = run(WAIT_FOR_SIGNAL.format(setup=""), control=StopControl(stop=stop_after(1.0)), grace_s=5)
    finally:
        signal.signal(signal.SIGINT, before)
    assert res.signals == ["SIGINT"] and res.returncode == 0
    assert ("stdout", "got SIGINT") in lines
