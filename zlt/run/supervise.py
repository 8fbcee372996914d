"""Run one trainer process: its own session, both pipes drained without blocking, a graceful stop
ladder, and no process left behind.

- The child starts a new session (`start_new_session`), so its process group id is its pid and a
  terminal's Ctrl+C reaches only zlt; zlt then decides how to stop the trainer.
- One selector loop reads stdout and stderr as they come (no thread per pipe, no deadlock however
  much either side writes), copies the raw bytes verbatim to the log, and hands logical lines on.
- Stop ladder (cancel or timeout): wait while a save is in progress (at most `grace_s`), SIGINT the
  group, wait `grace_s`, SIGTERM, wait `term_s`, SIGKILL. ai-toolkit exits 0 on SIGINT exactly as on
  success, so the result records that zlt asked for the stop.
- At the end every process of the group, and every descendant seen while running (even one that
  left the group with setsid), is terminated.
- A zlt started with SIGINT ignored (a shell's background job, `nohup`) would hand that on to the trainer, which
  then sleeps through the graceful stop: the child is started through `DEFAULT_SIGINT`, which puts SIGINT back to
  its default before it execs the trainer (same pid, same argv).
"""

from __future__ import annotations

import errno
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from zlt.run.lines import LineSplitter

READ_SIZE = 1 << 16
# exec the program argv[1] as argv[2:] with SIGINT at its default (ignored dispositions survive exec)
DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.argv[1], sys.argv[2:])")


def with_default_sigint(argv: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
    """argv, started so the trainer can be stopped with SIGINT even when this process ignores it. A program that
    is not there raises FileNotFoundError here, as Popen would."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return list(argv)
    program = argv[0]
    found = program if os.sep in program else shutil.which(program, path=(env or os.environ).get("PATH"))
    if not found or not os.access(found, os.X_OK) or os.path.isdir(found):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return [sys.executable, "-c", DEFAULT_SIGINT, found, *argv]
TICK_S = 0.1
DRAIN_AFTER_EXIT_S = 1.0
SWEEP_WAIT_S = 3.0


@dataclass
class ProcessResult:
    pid: int
    returncode: int | None
    stop_reason: str | None = None  # "cancelled" | "timeout" when zlt asked for the stop
    signals: list[str] = field(default_factory=list)  # what zlt sent, in order
    duration_s: float = 0.0
    swept: int = 0  # leftover processes zlt had to kill after the trainer exited

    @property
    def killed_by_us(self) -> bool:
        return "SIGKILL" in self.signals


@dataclass
class StopControl:
    """Ways a run is asked to stop. `force` (a second Ctrl+C) skips the wait for a save and the grace."""

    stop: threading.Event | None = None
    force: threading.Event | None = None
    deadline: float | None = None  # time.monotonic() value; past it the run times out
    cancel_file: Path | None = None  # another process (zlt cancel) may create it
    requested: str | None = None  # the runner's own stop, e.g. "diverged" (training.stop_on_nan)

    def reason(self, now: float) -> str | None:
        if self.requested is not None:
            return self.requested
        if self.stop is not None and self.stop.is_set():
            return "cancelled"
        if self.cancel_file is not None and self.cancel_file.exists():
            return "cancelled"
        if self.deadline is not None and now >= self.deadline:
            return "timeout"
        return None

    def forced(self) -> bool:
        return self.force is not None and self.force.is_set()


class _Ladder:
    """The stop ladder as a small state machine, advanced on every tick."""

    def __init__(self, pgid: int, grace_s: float, term_s: float, result: ProcessResult) -> None:
        self.pgid = pgid
        self.grace_s = grace_s
        self.term_s = term_s
        self.result = result
        self.stage = "running"  # running -> waiting_save -> sigint -> sigterm -> sigkill
        self.since = 0.0

    def advance(self, now: float, reason: str | None, busy: bool, forced: bool) -> None:
        if self.stage == "running":
            if reason is None:
                return
            self.result.stop_reason = reason
            self.stage, self.since = "waiting_save", now
        if self.stage == "waiting_save":
            if busy and not forced and now - self.since < self.grace_s:
                return
            self._send(signal.SIGINT, "sigint", now)
            return
        limit = {"sigint": self.grace_s, "sigterm": self.term_s}.get(self.stage)
        if limit is None:
            return
        if forced and self.stage == "sigint":
            limit = 0.0
        if now - self.since >= limit:
            if self.stage == "sigint":
                self._send(signal.SIGTERM, "sigterm", now)
            else:
                self._send(signal.SIGKILL, "sigkill", now)

    def _send(self, sig: signal.Signals, stage: str, now: float) -> None:
        self.stage, self.since = stage, now
        self.result.signals.append(sig.name)
        _killpg(self.pgid, sig)


def _killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_alive(pgid: int) -> bool:
    """Is a live (non-zombie) process left in the group? Zombies re-parented to an init that is slow
    to reap them answer killpg(0) too, so look closer when it says yes."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    import psutil

    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


class _Descendants:
    """Remembers every descendant seen, by (pid, create_time), so a pid reused later is never hit."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[int, float] = {}
        self.next_at = 0.0

    def poll(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + 1.0
        import psutil

        try:
            for child in psutil.Process(self.pid).children(recursive=True):
                try:
                    self.seen.setdefault(child.pid, child.create_time())
                except psutil.Error:
                    pass
        except psutil.Error:
            pass

    def alive(self) -> list:
        import psutil

        out = []
        for pid, created in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.Error:
                pass
        return out


def _sweep(pgid: int, descendants: _Descendants) -> int:
    """Terminate whatever is left of the group and the remembered descendants; SIGKILL stragglers."""
    import psutil

    left = descendants.alive()
    group = _group_alive(pgid)
    if not group and not left:
        return 0
    _killpg(pgid, signal.SIGTERM)
    for p in left:
        try:
            p.terminate()
        except psutil.Error:
            pass
    end = time.monotonic() + SWEEP_WAIT_S
    while time.monotonic() < end and (_group_alive(pgid) or descendants.alive()):
        time.sleep(0.05)
    _killpg(pgid, signal.SIGKILL)
    for p in descendants.alive():
        try:
            p.kill()
        except psutil.Error:
            pass
    return max(len(left), 1 if group else 0)


def supervise(
    argv: Sequence[str],
    *,
    on_lines: Callable[[list[str], str], None],
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    log: BinaryIO | None = None,
    control: StopControl | None = None,
    grace_s: float = 120.0,
    term_s: float = 10.0,
    busy: Callable[[], bool] = lambda: False,
    on_tick: Callable[[], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run argv to completion (or until stopped); `on_lines(lines, stream)` gets the logical lines of
    each chunk read, in order.

    Raises OSError when the program cannot be started at all.
    """
    control = control or StopControl()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        with_default_sigint(argv, env), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, bufsize=0,
    )
    result = ProcessResult(pid=proc.pid, returncode=None)
    if on_start is not None:
        on_start(proc.pid)
    ladder = _Ladder(proc.pid, grace_s, term_s, result)
    descendants = _Descendants(proc.pid)
    sel = selectors.DefaultSelector()
    splitters: dict[int, tuple[str, LineSplitter]] = {}
    for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert pipe is not None
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
        splitters[fd] = (stream, LineSplitter())
    exited_at: float | None = None
    try:
        while True:
            if sel.get_map():
                for key, _ in sel.select(TICK_S):
                    fd = key.fd
                    try:
                        data = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                    stream, splitter = splitters[fd]
                    if data:
                        if log is not None:
                            log.write(data)
                        lines = splitter.feed(data)
                        if lines:
                            on_lines(lines, stream)
                    else:
                        sel.unregister(fd)
                        lines = splitter.flush()
                        if lines:
                            on_lines(lines, stream)
            else:
                try:
                    proc.wait(TICK_S)
                except subprocess.TimeoutExpired:
                    pass
            now = time.monotonic()
            if log is not None:
                log.flush()
            if on_tick is not None:
                on_tick()
            if proc.poll() is None:
                descendants.poll(now)
                ladder.advance(now, control.reason(now), busy(), control.forced())
            else:
                if not sel.get_map():
                    break
                # The trainer is gone but something it started still holds a pipe open.
                exited_at = exited_at or now
                if now - exited_at >= DRAIN_AFTER_EXIT_S:
                    break
    finally:
        for fd in list(sel.get_map()):
            stream, splitter = splitters[fd]
            sel.unregister(fd)
            lines = splitter.flush()
            if lines:
                on_lines(lines, stream)
        sel.close()
        if proc.poll() is None:
            # Only reached when on_lines raised: never leave the trainer running.
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        result.swept = _sweep(proc.pid, descendants)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        result.returncode = proc.returncode
        result.duration_s = time.monotonic() - t0
    return result
