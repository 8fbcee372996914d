"""The worker: claims queued jobs onto free GPU slots and runs each in its own process.

One job per GPU at a time (a job's `resources.gpu` count respected), highest priority then oldest
first. The worker advertises its GPUs (name, memory from NVML) in the store, so `zlt workers` lists them
and jobs wanting bigger GPUs are left to a worker that has them. Every loop reaps jobs whose runner is
gone. A claimed job whose dataset or model this host cannot see is refused (back to the queue for
another host). SIGINT/SIGTERM stop claiming, ask each job process to stop its trainer gracefully and
requeue its job, then wait for them. Each job process watches its stdin: if this worker is killed, the
pipe closes and the job process stops its trainer and requeues the job (an infrastructure fault). A worker tied
the same way to the process that started it (`zlt serve`'s own, `stop_with_parent`) stops when that process dies,
and a worker whose home folder was removed stops with an error instead of polling a store nobody can reach.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from zlt.core.errors import BadInputError, EnvNotReadyError
from zlt.jobs.lease import watch_pipe
from zlt.jobs.orphans import sweep_host
from zlt.jobs.placement import unseen_paths
from zlt.jobs.reaper import end_abandoned
from zlt.jobs.records import Claim
from zlt.jobs.states import ACTIVE, JobStatus
from zlt.jobs.store import HOST, JobStore


class RunningJob(Protocol):
    @property
    def pid(self) -> int | None: ...

    def poll(self) -> int | None: ...
    def shutdown(self) -> None: ...


Launcher = Callable[[Claim], RunningJob]


@dataclass
class JobProcess:
    """A job running in a child process (`zlt _job-run`), tied to us by its stdin pipe."""

    proc: subprocess.Popen

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def shutdown(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass


def subprocess_launcher(home: Path, log_path: Path) -> Launcher:
    def launch(claim: Claim) -> JobProcess:
        argv = [
            sys.executable, "-m", "zlt", "_job-run", claim.job_id, "--home", str(home), "--token", claim.token,
            "--attempt", str(claim.attempt), "--gpus", ",".join(map(str, claim.gpus)),
        ]
        if claim.resume:
            argv.append("--resume")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return JobProcess(proc)

    return launch


@dataclass
class WorkerOptions:
    gpus: list[int]
    once: bool = False  # run until nothing this worker can run is queued, then exit
    poll_s: float = 1.0
    heartbeat_s: float = 5.0
    idle_exit_s: float | None = None  # background workers leave after this long with nothing to do
    cpu_slots: int = 1  # concurrent jobs with resources.gpu == 0
    gpu_info: list[dict[str, Any]] | None = None  # index, name, vram_gb per slot; None: ask NVML
    sweep_s: float = 15.0  # how often to look for trainers this host's dead runners left behind
    home_checks: int = 3  # polls in a row the home folder must be missing before the worker gives up (a brief
    # hiccup of a network file system is no removal)


@dataclass
class WorkerSummary:
    worker_id: str
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> state when this worker last saw it

    @property
    def failed(self) -> list[str]:
        return [j for j, s in self.jobs.items() if s == JobStatus.FAILED.value]

    def to_dict(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "jobs": [{"job_id": j, "state": s} for j, s in self.jobs.items()]}


class Worker:
    """Claims jobs and starts each with the `launcher` its caller hands it (zlt.flows.kinds.worker_launcher for
    `zlt worker`): this loop knows no kind of job. `on_start(log)` runs once the worker is registered (the artifact
    index's start-up repair, for `zlt worker`)."""

    def __init__(self, store: JobStore, opts: WorkerOptions, *, launcher: Launcher,
                 log: Callable[[str], None] | None = None,
                 on_start: Callable[[Callable[[str], None]], None] | None = None) -> None:
        self.store = store
        self.opts = opts
        self.worker_id = f"{HOST}:{os.getpid()}:{secrets.token_hex(2)}"
        self.launcher = launcher
        self.on_start = on_start
        self.stop_event = threading.Event()
        self.running: dict[str, tuple[Claim, RunningJob]] = {}  # by lease token: one job may be re-claimed
        # while its previous process is still exiting
        self.summary = WorkerSummary(self.worker_id)
        self._log = log or (lambda msg: None)
        self._home_missing = 0

    def log(self, msg: str) -> None:
        self._log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{self.worker_id}] {msg}")

    def request_stop(self, *_: Any) -> None:
        self.stop_event.set()

    def stop_with_parent(self, fd: int) -> None:
        """Stop when the pipe on `fd` from the process that started this worker reads `stop` or closes: that
        process died, however (SIGKILL included), and its worker must not outlive it."""

        def on_end(data: bytes) -> None:
            if not self.stop_event.is_set():
                self.log("asked to stop by the process that started it" if data.strip() == b"stop"
                         else "the process that started this worker is gone; stopping")
            self.stop_event.set()

        watch_pipe(fd, on_end, name="parent-watch")

    def _home_removed(self, had_home: bool) -> bool:
        """True once the home folder this worker started in has been missing for `home_checks` polls in a row (a
        store that needs no local folder, PostgreSQL, may run a worker whose home was never made)."""
        if not had_home:
            return False
        self._home_missing = 0 if self.store.home.is_dir() else self._home_missing + 1
        return self._home_missing >= self.opts.home_checks

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGTERM, self.request_stop)

    def run(self) -> WorkerSummary:
        info = self.opts.gpu_info if self.opts.gpu_info is not None else gpu_inventory(self.opts.gpus)
        self.vram = {int(g["index"]): float(g["vram_gb"]) for g in info if g.get("vram_gb")}
        self.store.register_worker(self.worker_id, os.getpid(), self.opts.gpus, info)
        shown = ", ".join(f"{g['index']}: {g['name']} {g['vram_gb']:g} GiB" for g in info) or "no NVIDIA GPU"
        self.log(f"started on {self.store.host}, slots {self.opts.gpus} ({shown})")
        if self.on_start is not None:
            self.on_start(self.log)
        last_beat = last_busy = time.monotonic()
        last_sweep = float("-inf")
        had_home, home_removed = self.store.home.is_dir(), False
        try:
            while not self.stop_event.is_set():
                if self._home_removed(had_home):
                    home_removed = True
                    self.log(f"home folder {self.store.home} was removed; exiting")
                    break
                for job_id, state in self.store.reap():
                    self.log(f"reaped {job_id}: {state.value}")
                if time.monotonic() - last_sweep >= self.opts.sweep_s:
                    self._sweep()
                    last_sweep = time.monotonic()
                self._collect()
                claimed = self._fill_slots()
                if self.running or claimed:
                    last_busy = time.monotonic()
                if time.monotonic() - last_beat >= self.opts.heartbeat_s:
                    self.store.worker_heartbeat(self.worker_id)
                    last_beat = time.monotonic()
                if not self.running and not claimed:
                    if self.opts.once and not self.store.backing_off():
                        break  # (a job backing off after a fault is waited for: it is runnable soon)
                    if self.opts.idle_exit_s is not None and time.monotonic() - last_busy >= self.opts.idle_exit_s:
                        self.log("idle; exiting")
                        break
                self.stop_event.wait(self.opts.poll_s)
        finally:
            self._shutdown()
            try:
                self.store.unregister_worker(self.worker_id)
            except Exception:  # noqa: BLE001 - the store went with the home folder: nothing left to unregister from
                if not home_removed:
                    raise
            self.log("stopped")
        if home_removed:
            raise EnvNotReadyError(f"the home folder {self.store.home} was removed while this worker ran; it stopped",
                                   hint="start the worker again with an existing home (--home or ZLT_HOME)")
        return self.summary

    def _fill_slots(self) -> int:
        n = 0
        while not self.stop_event.is_set():
            claim = self.store.claim(self.worker_id, self.opts.gpus, cpu_slots=self.opts.cpu_slots,
                                     vram_gb=self.vram)
            if claim is None:
                break
            unseen = unseen_paths(self.store.get(claim.job_id)["spec_json"])
            if unseen:
                why = f"{'; '.join(unseen)}: not visible on host {self.store.host}"
                self.store.refuse(claim.job_id, claim.token, why)
                self.log(f"refused {claim.job_id}: {why}")
                continue
            self.log(f"claimed {claim.job_id} attempt {claim.attempt} on {claim.gpus or 'cpu'}")
            try:
                job = self.launcher(claim)
            except OSError as e:
                self.store.transition(claim.job_id, JobStatus.FAILED, token=claim.token, error_cause="unknown",
                                      error_message=f"cannot start the job process: {e}",
                                      message=f"cannot start the job process: {e}")
                continue
            self.running[claim.token] = (claim, job)
            self.summary.jobs[claim.job_id] = JobStatus.PREPARING.value
            n += 1
        return n

    def _collect(self) -> None:
        """Job processes that exited: a job they left active (crash, kill) is ended here at once."""
        for token, (claim, job) in list(self.running.items()):
            rc = job.poll()
            if rc is None:
                continue
            del self.running[token]
            job_id = claim.job_id
            row = self.store.get(job_id)
            if JobStatus(row["state"]) in ACTIVE and row["lease_token"] == claim.token:
                try:
                    row = end_abandoned(self.store, row, f"job process exited with code {rc} without finishing")
                except Exception as e:  # moved on meanwhile; the reaper covers anything left
                    self.log(f"could not end {job_id}: {e}")
            self.summary.jobs[job_id] = row["state"]
            self.log(f"{job_id} -> {row['state']}")

    def _sweep(self) -> None:
        """End trainers on this host whose job is no longer run here (their runner died with its worker):
        the job may already run again elsewhere, and two trainers must never write one job folder."""
        try:
            for job_id, pids in sweep_host(self.store).items():
                self.log(f"ended leftover trainer process(es) of {job_id}: {', '.join(map(str, pids))}")
        except Exception as e:  # a sweep is housekeeping: never let it stop the worker
            self.log(f"orphan sweep failed: {e}")

    def _shutdown(self) -> None:
        if not self.running:
            return
        self.log(f"stopping {len(self.running)} job(s); they will be requeued")
        for _, job in self.running.values():
            job.shutdown()
        while self.running:
            self._collect()
            if self.running:
                time.sleep(0.2)


def parse_gpu_list(text: str) -> list[int]:
    """`--gpus 0,1` -> [0, 1]; BadInputError on anything else."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise BadInputError(f"--gpus {text!r}: {part!r} is not a GPU index", hint="e.g. --gpus 0 or --gpus 0,1")
        if int(part) in out:
            raise BadInputError(f"--gpus {text!r}: GPU {part} listed twice")
        out.append(int(part))
    return out


def nvidia_gpu_count() -> int | None:
    """GPUs NVML sees, or None without an NVIDIA driver (pynvml imported only here)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def gpu_inventory(slots: list[int]) -> list[dict[str, Any]]:
    """Name and memory (GiB) of each listed GPU from NVML; [] without an NVIDIA driver (plain slots)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        out = []
        n = int(pynvml.nvmlDeviceGetCount())
        for i in slots:
            if i >= n:
                continue
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else str(name)
            vram = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30
            out.append({"index": i, "name": name, "vram_gb": round(vram, 1)})
        return out
    except Exception:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def default_slots() -> list[int]:
    """CUDA_VISIBLE_DEVICES when it lists indices, else every NVIDIA GPU, else one CPU slot (0)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible and all(p.strip().isdigit() for p in visible.split(",")):
        return [int(p) for p in visible.split(",")]
    n = nvidia_gpu_count()
    return list(range(n)) if n else [0]


def check_slots(gpus: list[int]) -> None:
    """On a machine with NVIDIA GPUs, every listed id must exist; without one, ids are plain slots."""
    n = nvidia_gpu_count()
    if n:
        missing = [g for g in gpus if g >= n]
        if missing:
            raise BadInputError(f"--gpus: no GPU {missing[0]} on this machine (found {n}: 0..{n - 1})")
