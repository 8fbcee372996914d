"""Trainer processes left behind by a job whose runner died (SIGKILL, OOM killer).

The runner starts each trainer in its own session, so killing the runner does not kill the trainer.
Before the reaper frees an abandoned job's GPU, it ends every process on this host whose command line
names the job's folder (every backend's argv does: the rendered config lives there), so a new job is
never started on a GPU an orphan still holds. Only session leaders match (the runner starts trainers
with `start_new_session`), so a person's `tail -f <job_dir>/train.log` is never touched.
"""

from __future__ import annotations

import os
import signal
import time


def find_orphans(job_dir: str) -> list[int]:
    import psutil

    needle = os.path.join(job_dir, "")  # "<job_dir>/": no match on a sibling job whose id extends ours
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = proc.info.get("cmdline") or []
        except (psutil.Error, OSError):
            continue
        pid = proc.info["pid"]
        if pid == me or not any(needle in part for part in cmd):
            continue
        try:
            if os.getsid(pid) == pid:
                found.append(pid)
        except OSError:
            continue
    return found


def kill_orphans(job_dir: str, *, grace_s: float = 5.0) -> list[int]:
    """SIGTERM the process groups of the job's leftover processes, SIGKILL what remains after `grace_s`."""
    import psutil

    pids = find_orphans(job_dir)
    if not pids:
        return []
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and not _zombie(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if psutil.pid_exists(pid) and not _zombie(pid):
            _signal_group(pid, signal.SIGKILL)
    return pids


def _signal_group(pid: int, sig: int) -> None:
    try:
        pgid = os.getpgid(pid)
        if pgid == pid:  # a session/group leader: the trainer and its children together
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _zombie(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
