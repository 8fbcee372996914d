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
import socket
import time
from typing import Any

import psutil

from zlt.core.errors import NotFoundError
from zlt.core.paths import jobs_dir


def process_alive(pid: int, started: float | None) -> bool:
    """True when `pid` runs and (if known) was started at `started`; a zombie counts as gone."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process with that pid exists; do not guess it away


def find_orphans(job_dir: str) -> list[int]:
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


def kill_orphans(job_dir: str, *, grace_s: float = 5.0, pids: list[int] | None = None) -> list[int]:
    """SIGTERM the process groups of the job's leftover processes (or of `pids`), SIGKILL what remains
    after `grace_s`."""
    pids = find_orphans(job_dir) if pids is None else pids
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
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def sweep_host(store: Any) -> dict[str, list[int]]:
    """End this host's trainers whose job is queued again or runs elsewhere (or whose runner is gone).

    The reaper on another host can only requeue a job by its lease; it cannot reach a trainer left
    running here. Each worker therefore sweeps its own host. Jobs in a final state are left alone (a
    trainer recorded by something else than a worker is not ours to judge). A trainer counts as this
    host's when the host id in its environment (inherited from its worker) is ours: containers, or tests
    that play several hosts on one machine, see processes that belong to other host ids.
    """
    root = os.path.join(str(jobs_dir(store.home)), "")
    found: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = proc.info.get("cmdline") or []
            pid = proc.info["pid"]
            part = next((c for c in cmd if root in c), None)
            if part is None or os.getsid(pid) != pid:
                continue
            if (proc.environ().get("ZLT_HOST_ID") or socket.gethostname()) != store.host:
                continue
        except (psutil.Error, OSError):
            continue
        job_id = part.split(root, 1)[1].split("/", 1)[0]
        if job_id:
            found.setdefault(job_id, []).append(pid)
    ended: dict[str, list[int]] = {}
    alive = store.pid_alive or process_alive
    for job_id, pids in found.items():
        try:
            row = store.get(job_id)
        except NotFoundError:
            continue
        if row["id"] != job_id:
            continue  # a prefix match of some other job
        state = row["state"]
        if state in ("preparing", "running") and row["host"] == store.host and (
                row["runner_pid"] is None or alive(row["runner_pid"], row["runner_started"])):
            continue
        if state not in ("queued", "preparing", "running"):
            continue
        killed = kill_orphans(row["job_dir"], pids=pids)
        if killed:
            ended[job_id] = killed
    return ended
