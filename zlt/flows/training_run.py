"""One run of a training job, stage by stage (see pipeline.run_training for the contract)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zlt import backends
from zlt.artifacts import collect_artifact
from zlt.artifacts.warmstart import apply_warm_start
from zlt.backends.base import Backend
from zlt.core.errors import BadInputError, EnvNotReadyError, ZltError
from zlt.core.events import Checkpoint, Error, Event, Phase, Resumed
from zlt.core.fsutil import atomic_write_json
from zlt.core.paths import cache_dir
from zlt.dataset import prepare_cached
from zlt.dataset.prepare import skipped_lines
from zlt.eval.live_rows import LIVE_DIR, preserved
from zlt.flows.after_training import evaluate_after_training
from zlt.flows.captioning import caption_stage
from zlt.flows.live_eval import LiveEvaluator
from zlt.flows.preflight import preflight as run_preflight
from zlt.flows.training_context import JobContext, RunOutcome, Sink, TrainRequest, error_cause, error_event
from zlt.flows.training_helpers import keep_last_good, oom_hint, preflight_error, say_trained
from zlt.infer.pipeline import cuda_ordinal
from zlt.preflight.install import locate
from zlt.preflight.select import select_profile
from zlt.preflight.tokenizer import hf_cli
from zlt.render import RenderContext, write_render
from zlt.run.checkpoints import (
    CheckpointFile,
    inspect_checkpoint,
    latest_state,
    scan_checkpoints,
    write_checkpoints_json,
)
from zlt.run.classify import classify, is_interrupt
from zlt.run.divergence import NAN_PATIENCE, DivergenceWatch
from zlt.run.interpret import LogInterpreter, RunFacts
from zlt.run.jobfiles import LOG_NAME, has_safetensors, rotate
from zlt.run.launch import child_env
from zlt.run.series import SERIES_FILE, SeriesWriter, series_sink, summarize_run
from zlt.run.supervise import ProcessResult, StopControl, supervise

CANCEL_FILE = "cancel.request"
STEP_PHASES = {"cache_latents": "caching_latents", "cache_text_encoder_outputs": "caching_text",
               "train": "loading_model"}


class JobRun:
    def __init__(self, req: TrainRequest, *, sinks: Sequence[Sink], stop: threading.Event | None,
                 force: threading.Event | None) -> None:
        self.req = req
        self.spec = req.loaded.spec
        self.backend = req.backend or self.spec.training.backend
        self.b: Backend | None = None  # the registry's backend, once preflight has checked the name
        self.sinks, self.stop, self.force = sinks, stop, force
        self.stage = "preflight"
        self.facts = RunFacts()
        self.profile = None
        self.location = None
        self.render = None
        self.prepared_dir: Path | None = None
        self.resume_from: Path | None = None
        self.resume_step = 0
        self.checkpoints: list[CheckpointFile] = []
        self.summary: dict[str, Any] = {}
        self.live: Any = None  # LiveEvaluator while training runs (eval.every / eval.early_stop)
        self.live_state: Any = None  # what it left: rows, early-stop verdict, loaded models

    # -- driver --------------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        ctx = self.ctx = JobContext(self.req, self.sinks)
        self.attempt_output = ctx.output_dir
        cancel_file = ctx.job_dir / CANCEL_FILE
        cancel_file.unlink(missing_ok=True)
        deadline = time.monotonic() + self.spec.job.timeout_hours * 3600
        self.control = StopControl(self.stop, self.force, deadline, cancel_file)
        ctx.on_event.append(self._on_event)
        try:
            ctx.write_spec()
            for w in self.req.loaded.warnings:
                ctx.warn(w)
            outcome = self._stages()
        except ZltError as err:
            self._end(self._early_outcome(error_cause(err, self.stage), err.message, err.hint, error=err))
            raise
        except BaseException as err:
            self._end(self._early_outcome("unknown", f"zlt failed while {self.stage}: {err!r}", None))
            raise
        finally:
            self._close_live()
            if self.live_state is not None:
                self.live_state.release()
        self._end(outcome)
        return outcome

    def _stages(self) -> RunOutcome:
        self._preflight()
        for stage in (lambda: caption_stage(self), self._prepare_dataset, self._render_files):
            reason = self.control.reason(time.monotonic())
            if reason:
                return self._stopped_before_launch(reason)
            stage()
        return self._launch()

    # -- stages --------------------------------------------------------------------------------
    def _preflight(self) -> None:
        ctx, req = self.ctx, self.req
        ctx.phase_event("preflight")
        self.b = backends.get(self.backend)  # BadInputError naming training.backend and the choices
        self.profile, notes = select_profile(self.spec, self.backend, name=req.profile, vram_gb=req.vram_gb)
        for note in notes:
            ctx.phase_event("preflight", note)
        if req.skip_preflight:
            ctx.warn("preflight skipped (--skip-preflight): GPU, trainer install and model files were not checked")
            return
        source = Path(req.loaded.source)  # the user's spec file; a job from a dict: the copy in the job folder
        report = run_preflight(self.spec, backend=self.backend, profile=self.profile.name, vram_gb=req.vram_gb,
                               ai_toolkit=req.ai_toolkit, musubi=req.musubi, home=req.home, gpus=req.gpus,
                               spec_path=source if source.is_file() else ctx.job_dir / "spec.yaml")
        atomic_write_json(ctx.job_dir / "preflight.json", report.to_dict())
        if not report.ok:
            raise preflight_error(report)

    def _prepare_dataset(self) -> None:
        self.stage = "preparing_dataset"
        ctx, spec = self.ctx, self.spec
        ctx.phase_event("preparing_dataset", spec.dataset.path)
        flip = self.b.flips_in_prepare and spec.dataset.augment.horizontal_flip
        res = prepare_cached(Path(spec.dataset.path), spec, cache_dir(self.req.home), flip=flip)
        self.prepared_dir = Path(res.out_dir)
        doc = {**res.to_dict(), "source": spec.dataset.path, "prepared_dir": str(res.out_dir),
               "manifest": str(res.manifest_path), "dataset_sha256": res.dataset_sha256,
               "num_images": res.num_images, "flip": flip}
        atomic_write_json(ctx.job_dir / "dataset.json", doc)
        for line in skipped_lines(res):
            ctx.warn(line)

    def _render_files(self) -> None:
        self.stage = "rendering"
        ctx, req, spec = self.ctx, self.req, self.spec
        ctx.emit(Phase(phase="rendering", message=self.backend, profile=self.profile.name if self.profile else None))
        b = self.b
        explicit = getattr(req, b.install.config_key) if b.install else None  # --ai-toolkit / --musubi
        self.location = locate(self.backend, explicit)
        warm = apply_warm_start(ctx.job_dir, self.backend, ctx.output_dir)  # a `zlt retrain` job starts from its parent
        resume = req.resume or warm.resume
        if not resume and has_safetensors(ctx.output_dir):
            moved = rotate(ctx.output_dir)
            ctx.warn(f"a previous run's output was moved to {moved} (pass --resume to continue it instead)")
        if resume and b.resumes_from_state:
            self._plan_state_resume()
        rctx = RenderContext(
            dataset_dir=self.prepared_dir, output_dir=self.attempt_output, config_dir=ctx.render_dir,
            job_id=req.job_id, cache_dir=cache_dir(req.home), trainer_root=self.location.root,
            python=self.location.python,
            log_path=ctx.job_dir / b.log_file if b.log_file else None,
            resume=resume, init_lora=warm.init_lora,
        )
        if self.resume_from is not None:
            rctx.resume_from, rctx.resume_step = self.resume_from, self.resume_step
        self.render = b.render(spec, self.profile, rctx)
        write_render(self.render, ctx.render_dir)
        for w in self.render.warnings:
            ctx.warn(w)

    def _plan_state_resume(self) -> None:
        state = latest_state(self.ctx.output_dir, self.spec.name)
        if state is None:
            self.ctx.warn(f"--resume: no {self.backend} state folder found; training starts from step 0")
            return
        self.resume_from, self.resume_step = state.path, state.step
        # the trainer restarts its counter at 0: a separate folder keeps its file names from colliding.
        self.attempt_output = self.ctx.output_dir / f"resume_from_{state.step:08d}"

    def _launch(self) -> RunOutcome:
        self.stage = "training"
        if not self.req.resume:
            rotate(self.ctx.job_dir / SERIES_FILE)  # a fresh run's series must not mix with an earlier one's
        series = SeriesWriter(self.ctx.job_dir / SERIES_FILE, attempt=self.req.attempt)
        watch = DivergenceWatch(limit=NAN_PATIENCE if self.spec.training.stop_on_nan else None)
        ctx, render = self.ctx, self.render
        rotate(ctx.job_dir / LOG_NAME)
        env = child_env(self.req.gpus)
        parser = self.b.parser(self.spec.name)
        names = render.step_names if len(render.step_names) == len(render.argv) else ["train"] * len(render.argv)
        last: ProcessResult | None = None
        stopped_before: str | None = None
        completed = 0
        self._start_live()
        with open(ctx.job_dir / LOG_NAME, "ab", buffering=0) as log:
            for argv, name in zip(render.argv, names, strict=True):
                stopped_before = self.control.reason(time.monotonic())
                if stopped_before:
                    break
                is_train = name == "train"
                script = next((Path(a).name for a in argv[1:] if a.endswith(".py")), " ".join(argv[1:3]))
                ctx.phase_event(STEP_PHASES.get(name, "loading_model"), f"{name}: {script}")
                if is_train and self.resume_from is not None:
                    ctx.emit(Resumed(step=self.resume_step, path=str(self.resume_from)))
                interp = LogInterpreter(parser, self._emit_trainer_event, facts=self.facts,
                                        step_offset=self.resume_step if is_train else 0,
                                        progress_allowed=is_train, on_progress=series_sink(series, self.b.loss_is_next_steps), divergence=watch,
                                        on_diverged=self._diverged)
                try:
                    last = supervise(argv, on_lines=interp.feed_lines, cwd=render.cwd, env=env, log=log,
                                     control=self.control, grace_s=self.req.stop_grace_s,
                                     busy=lambda i=interp: i.saving, on_tick=self._tick)
                except OSError as e:
                    raise EnvNotReadyError(f"cannot start the trainer ({argv[0]}): {e.strerror or e}",
                                           hint="check the trainer's python (ZLT_AI_TOOLKIT_PYTHON / ZLT_MUSUBI_PYTHON)") from None
                finally:
                    interp.finish()
                if last.returncode != 0 or last.stop_reason:
                    break
                completed += 1
        series.close()
        self._close_live()
        self.stage = "collecting"
        self._refresh_checkpoints()
        return self._judge(last, stopped_before, ran_all=completed == len(render.argv))

    # -- evaluation while training -------------------------------------------------------------
    def _start_live(self) -> None:
        if not self.spec.eval.during_training_every(self.spec.output.save.every):
            return
        if not self.req.resume:
            rotate(self.ctx.job_dir / LIVE_DIR)  # an earlier run's rows (and its kept link) stay beside, as eval_live.1
        self.live = LiveEvaluator(self.spec, job_id=self.req.job_id, job_dir=self.ctx.job_dir,
                                  train_dir=self.prepared_dir, gpu=cuda_ordinal(self.req.gpus),
                                  request_stop=self._request_stop, resume=self.req.resume)
        self.live.start()

    def _request_stop(self, reason: str) -> None:
        if self.control.requested is None:
            self.control.requested = reason

    def _tick(self) -> None:
        self._drain_live()
        self.ctx.throttle.tick()

    def _drain_live(self) -> None:
        if self.live is not None:
            for ev in self.live.drain():
                self.ctx.emit(ev)

    def _close_live(self) -> None:
        """Let the checkpoint being scored finish (its row may decide the early stop) and keep what was scored."""
        if self.live is None:
            return
        live, self.live = self.live, None
        reason = self.control.reason(time.monotonic())  # a cancel or timeout does not wait on a drawing
        self.live_state = live.close(timeout=None if reason in (None, "early_stop", "diverged") else 10.0)
        for ev in live.drain():
            self.ctx.emit(ev)

    # -- outcome -------------------------------------------------------------------------------
    def _judge(self, last: ProcessResult | None, stopped_before: str | None, ran_all: bool) -> RunOutcome:
        finals = [c for c in self.checkpoints if c.final and c.valid]
        stop_reason = last.stop_reason if last else stopped_before
        if stop_reason not in (None, "diverged") and last is not None and last.returncode == 0 and finals and (
                max(c.step or 0 for c in finals) >= self.spec.training.max_steps):
            stop_reason = None  # the stop came after the trainer had finished its work
        verdict = classify(
            returncode=last.returncode if last else None, stop_reason=stop_reason,
            signals_sent=last.signals if last else [], facts=self.facts, oom_hint=oom_hint(self.spec, self.profile, self.backend),
            timeout_hours=self.spec.job.timeout_hours, expect_final=ran_all, have_final=bool(finals),
            hf_cli=hf_cli(), job_id=self.req.job_id,
        )
        self._summarize()
        outcome = self._outcome(verdict.status, verdict.cause, verdict.message, verdict.hint,
                                exit_code=last.returncode if last else None, log_tail=verdict.log_tail)
        if outcome.cause == "diverged":
            keep_last_good(outcome, self.checkpoints, self.facts.diverged_at)
        if outcome.status == "succeeded":
            decision = self.live_state.decision if self.live_state is not None else None
            say_trained(outcome, self.summary, self.facts.last_step, self.spec.training.max_steps,
                        decision if stop_reason == "early_stop" else None)
            self._collect(outcome)
        return outcome

    def _summarize(self) -> None:
        roots = [r for r in dict.fromkeys([self.ctx.output_dir, self.attempt_output]) if r.is_dir()]
        self.summary, problem = summarize_run(self.ctx.job_dir, roots)
        if problem:
            self.ctx.warn(problem)

    def _diverged(self, step: int) -> None:
        self.control.requested = "diverged"

    def _collect(self, outcome: RunOutcome) -> None:
        self.ctx.phase_event("collecting")
        self._write_result(outcome)  # the collector reads result.json
        try:
            rec = collect_artifact(self.ctx.job_dir, home=self.req.home, attempts=self.req.attempt)
        except ZltError as e:
            outcome.status, outcome.cause = "failed", "bad_config" if isinstance(e, BadInputError) else "unknown"
            outcome.message = (f"training finished (checkpoints in {self.attempt_output}) but the artifact was "
                               f"not collected: {e.message}")
            outcome.hint = e.hint or None
            return
        outcome.artifact_id, outcome.artifact_path = rec.id, str(rec.path)
        for note in rec.warnings:  # e.g. what was trained differs from the spec: said where the user looks
            if note.startswith(f"{self.backend} trained "):
                self.ctx.warn(note)

        evaluate_after_training(self.spec, rec.id, self.req.home, self.ctx, live=self.live_state)

    def _outcome(self, status: str, cause: str | None, message: str | None, hint: str | None, *,
                 exit_code: int | None = None, log_tail: list[str] | None = None) -> RunOutcome:
        f, sm = self.facts, self.summary
        return RunOutcome(
            job_id=self.req.job_id, status=status, exit_code=exit_code, cause=cause, message=message,
            artifact_id=None, artifact_path=None, checkpoints=[c.to_dict() for c in self.checkpoints if c.valid],
            last_step=f.last_step, hint=hint,
            first_loss=sm.get("first_loss", f.first_loss), last_loss=sm.get("final_loss", f.last_loss),
            job_dir=str(self.ctx.job_dir), log_tail=log_tail or [], it_s=sm.get("it_s"),
        )

    def _early_outcome(self, cause: str, message: str, hint: str | None, error: ZltError | None = None) -> RunOutcome:
        if error is not None:
            self.ctx.emit(error_event(error))
        return self._outcome("failed", cause, message, hint or None)

    def _stopped_before_launch(self, reason: str) -> RunOutcome:
        status = "timeout" if reason == "timeout" else "cancelled"
        return self._outcome(status, status, f"{status} before the trainer started", None)

    def _end(self, outcome: RunOutcome) -> None:
        self._write_result(outcome)
        self.ctx.finish(outcome)

    def _write_result(self, outcome: RunOutcome) -> None:
        loc = self.location
        commit = loc.commit if loc is not None else None
        version = self.b.trainer_version(commit) if self.b is not None else commit
        extra: dict[str, Any] = {"trainer": loc.to_dict() if loc else None,
                                 "output_dir": str(self.attempt_output), "resume_step": self.resume_step,
                                 "it_s": outcome.it_s, "loss_source": self.summary.get("source"),
                                 "diverged_at": self.facts.diverged_at,
                                 "eval_during_training": self.live_state.summary() if self.live_state else None}
        self.ctx.write_result(outcome, backend=self.backend, profile=self.profile.name if self.profile else None,
                              backend_version=version, extra=extra)

    # -- checkpoints ---------------------------------------------------------------------------
    def _emit_trainer_event(self, ev: Event) -> None:
        if isinstance(ev, Error) and is_interrupt(ev) and self.control.reason(time.monotonic()) is not None:
            return  # the KeyboardInterrupt of a stop zlt asked for (trainer and accelerate each print one): not an error
        if isinstance(ev, Checkpoint) and ev.step is None:
            # A final file has no step in its name; its header knows (training_info / ss_steps).
            path = Path(ev.path)
            if not path.is_absolute() and self.render is not None and self.render.cwd:
                path = Path(self.render.cwd) / path
            ck = inspect_checkpoint(path, path.stem) if path.is_file() else None
            if ck is not None and ck.step is not None:
                ev.step = ck.step + (self.resume_step if self.b is not None and self.b.resumes_from_state else 0)
        self.ctx.emit(ev)

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, Checkpoint):
            self._refresh_checkpoints()
            if self.live is not None:
                self.live.offer(self.checkpoints)

    def _refresh_checkpoints(self) -> None:
        out = self.ctx.output_dir
        found = scan_checkpoints(out, self.spec.name)
        found += self._preserved_checkpoints({c.step for c in found if c.valid})
        self.checkpoints = found
        state = latest_state(out, self.spec.name) if self.b is not None and self.b.resumes_from_state else None
        valid = [c for c in found if c.valid]
        doc = write_checkpoints_json(self.ctx.job_dir, self.backend, self.attempt_output, valid,
                                     states=[state] if state else None)
        bad = [c.to_dict() for c in found if not c.valid]
        if bad:
            doc["invalid"] = bad
            atomic_write_json(self.ctx.job_dir / "checkpoints.json", doc)

    def _preserved_checkpoints(self, have: set[int | None]) -> list[CheckpointFile]:
        """The checkpoint the evaluation while training scored best, kept by zlt after the trainer rotated it out."""
        source = self.live if self.live is not None else self.live_state
        if source is None:
            return []
        out = []
        for step, path in preserved(list(source.rows)):
            if step in have:
                continue
            ck = inspect_checkpoint(path, self.spec.name)
            if ck is not None and ck.valid:
                ck.step = step
                out.append(ck)
        return out
