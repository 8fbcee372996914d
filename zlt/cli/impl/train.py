"""The body of `zlt train` (declared in zlt/cli/train.py): the gate, then the training run in the foreground. The
spec models (pydantic), the backends and the run load here, on first use, never for `zlt --help`."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import typer
from rich.markup import escape

from zlt.cli.common import console, home_path
from zlt.cli.use import usage_lines
from zlt.core.errors import BadInputError
from zlt.core.paths import job_dir as default_job_dir
from zlt.core.paths import new_job_id
from zlt.flows.foreground import ForegroundRun, run_foreground
from zlt.flows.gate import admit
from zlt.render.common import sample_steps_guidance
from zlt.run.display import NdjsonSink, RichSink


def _parse_gpus(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInputError(f"--gpus {text!r}: expected GPU indices like 0 or 0,1") from None


def gpu_sets(sets: list[str], gpus: list[int] | None) -> list[str]:
    """`--gpus 0,1` means one trainer process per listed GPU (DDP): job.resources.gpu becomes their number,
    unless a --set names it."""
    if not gpus or any(x.replace(" ", "").startswith("job.resources.gpu=") for x in sets):
        return list(sets)
    return [*sets, f"job.resources.gpu={len(gpus)}"]


def _job_id_for(workdir: Path | None, resume: bool) -> str:
    if workdir is not None and resume and (workdir / "result.json").is_file():
        try:
            old = json.loads((workdir / "result.json").read_text(encoding="utf-8")).get("job_id")
            if isinstance(old, str) and old:
                return old
        except (OSError, json.JSONDecodeError):
            pass
    return new_job_id()


class _StopOnSignal:
    """SIGINT/SIGTERM set `stop` (graceful); a second one sets `force`. Handlers are restored on exit."""

    def __init__(self, say) -> None:
        self.stop, self.force, self.say = threading.Event(), threading.Event(), say
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.stop.is_set():
            self.force.set()
            self.say("stopping now (skipping the grace period)")
        else:
            self.stop.set()
            self.say("stopping: the trainer may finish a save first; press Ctrl+C again to force")

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


class _ShowOnce:
    """What a person sees: each warning once (the runner and the trainer may both say it), and no error
    event: the summary at the end (or the error message) says it, with its hint."""

    def __init__(self, sink) -> None:
        self.sink, self.seen = sink, set()

    def __call__(self, d: dict) -> None:
        if d.get("type") == "error":
            return
        if d.get("type") == "warning":
            if d.get("message") in self.seen:
                return
            self.seen.add(d.get("message"))
        self.sink(d)

    def close(self) -> None:
        self.sink.close()


def _print_outcome(outcome, console, spec=None) -> None:
    if outcome.status == "succeeded":
        console.print(f"[green]succeeded[/] {escape(outcome.message or '')}", highlight=False)
        if outcome.first_loss is not None:
            console.print(f"loss: first {outcome.first_loss:.4g}, last {outcome.last_loss:.4g}", highlight=False)
        if outcome.artifact_path:
            console.print(f"artifact: {escape(outcome.artifact_path)}", highlight=False)
        console.print(f"job folder: {escape(outcome.job_dir or '')}", highlight=False)
        if outcome.artifact_path and spec is not None:
            real = "/" in spec.model.base.name and not spec.is_tiny
            base = spec.model.base.name if real else "Tongyi-MAI/Z-Image-Turbo"
            steps, guidance = sample_steps_guidance(spec) if real else (9, 0.0)
            for line in usage_lines(outcome.artifact_path, outcome.artifact_id or "", trigger=spec.trigger,
                                    key_format=spec.output.key_format, base_model=base, tiny=spec.is_tiny,
                                    steps=steps, guidance=guidance):
                console.print(escape(line), highlight=False)
        return
    err = sys.stderr
    err.write(f"{outcome.status} ({outcome.cause}): {outcome.message}\n")
    if outcome.hint:
        err.write(f"hint: {outcome.hint}\n")
    if outcome.cause == "unknown" and outcome.log_tail:
        err.write("last log lines:\n" + "".join(f"  {line}\n" for line in outcome.log_tail))
    err.write(f"job folder: {outcome.job_dir} (train.log, events.jsonl)\n")


def train(spec, backend, profile, vram_gb, workdir, skip_preflight, ai_toolkit, musubi, resume, gpus, grace,
           sets, home, json_out) -> None:
    if resume and workdir is None:  # the example names the real home: --home, $ZLT_HOME or the default
        raise BadInputError("--resume needs --workdir: the folder of the job to continue",
                            hint=f"pass the job folder, e.g. --workdir {default_job_dir(home_path(home), '<job id>')}; "
                                 "or 'zlt retry JOB_ID' queues it again from its last checkpoint")
    gpu_list = _parse_gpus(gpus)
    # The gate first: a spec, backend or dataset problem is exit 2 before any job is recorded, as validate,
    # render and submit say it. The machine is checked by the run's own preflight (exit 3).
    loaded = admit(spec, sets=gpu_sets(sets, gpu_list), backend=backend, mode="train").loaded
    h = home_path(home)
    wd = Path(workdir).expanduser().resolve() if workdir else None
    job_id = _job_id_for(wd, resume)
    run = ForegroundRun(
        loaded=loaded, home=h, job_id=job_id, job_dir=wd or default_job_dir(h, job_id), backend=None,
        profile=profile, vram_gb=vram_gb, skip_preflight=skip_preflight, resume=resume, gpus=gpu_list,
        ai_toolkit=ai_toolkit, musubi=musubi, stop_grace_s=grace,
    )

    def say(msg: str) -> None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    if json_out:
        sink = NdjsonSink(sys.stdout)
    else:
        say(f"job {job_id}: {run.job_dir}")
        sink = _ShowOnce(RichSink(console()))
    run.sinks = [sink]
    try:
        with _StopOnSignal(say) as sig:
            outcome = run_foreground(run, stop=sig.stop, force=sig.force)
    finally:
        if not json_out:
            sink.close()  # type: ignore[union-attr]
    if not json_out:
        _print_outcome(outcome, console(), loaded.spec)
    if outcome.status != "succeeded":
        raise typer.Exit(1)
