"""Evaluation while a training job runs (`eval.every`, `eval.early_stop`): a flow, it composes the pipeline
(zlt.infer), the key-format conversion (zlt.artifacts) and the scoring of zlt eval (zlt.eval) beside the run.

The trainer is a child process; this runs in the runner's process, on a thread of its own, so the trainer keeps
training while a checkpoint is scored. The runner offers every checkpoint it sees saved; the first one at or after
each multiple of `every` steps is scored exactly as `zlt eval` scores it (same held-out prompts, seeds, settings,
metric model and drawing loop), with the LoRA file converted to the key format the artifact will hold. With
`early_stop` the rule of zlt/eval/early_stop.py runs after each row and may ask the runner to stop the trainer.

Nothing here touches the event stream directly: events wait in a queue the runner drains on its own thread.
Rows are kept in <job>/eval_live/rows.json (with their images; zlt.eval.live_rows), and the artifact's evaluation
after training reuses those whose checkpoint file is unchanged (`LiveState.prior`), so no checkpoint is drawn twice.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError, ZltError
from zlt.core.events import Evaluation, Warning_
from zlt.core.fsutil import atomic_write_json, sha256_file
from zlt.eval import evaluate as scoring
from zlt.eval.best import pick_best
from zlt.eval.clip import ClipScorer
from zlt.eval.early_stop import StopDecision, decide
from zlt.eval.evaluate import (
    check_grid,
    default_device,
    embed_training_images,
    save_row_images,
    settings_from_spec,
)
from zlt.eval.live_rows import LIVE_DIR, ROWS_FILE, SCHEMA, LiveState, file_stamp, fingerprint
from zlt.eval.options import from_spec
from zlt.eval.plan import list_images
from zlt.eval.prompts import build_prompts
from zlt.infer.pipeline import PipelineCache, plan_device
from zlt.infer.resolve import ArtifactRef, ResolvedLora
from zlt.infer.run import draw
from zlt.lora.convert import read_lora, render_lora
from zlt.lora.safetensors_io import write_file
from zlt.preflight.clip_model import require_clip


class LiveEvaluator:
    """Scores checkpoints while training runs. `offer()` and `drain()` are called by the runner's thread."""

    def __init__(self, spec: Any, *, job_id: str, job_dir: Path, train_dir: Path | None, gpu: int | None,
                 request_stop: Callable[[str], None], resume: bool = False, scorer: Any = None,
                 image_source: Callable[..., list[Any]] | None = None) -> None:
        self.spec, self.job_id, self.job_dir = spec, job_id, Path(job_dir)
        self.every = int(spec.eval.during_training_every(spec.output.save.every) or 0)
        self.early = spec.eval.early_stop
        self.opts = from_spec(spec)
        self.opts.gpu = gpu
        self.train_dir = Path(train_dir) if train_dir else None
        self.request_stop = request_stop
        self.resume = resume
        self.folder = self.job_dir / LIVE_DIR
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.rows: list[dict[str, Any]] = []
        self.decision: StopDecision | None = None
        self.failed: str | None = None
        self.fp: str | None = None
        self._scorer = scorer  # tests pass a scripted scorer; None: the spec's CLIP model
        self._image_source = image_source  # tests only: (lora_file|None, prompts, count, seed) -> images
        self._cache: Any = None
        self.train_emb: Any = None  # set once the metric model is loaded
        self._pending: deque[tuple[int, Path, Path]] = deque()  # step, zlt's link, the trainer's file
        self._bucket = 0  # steps // every of the last checkpoint taken
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"zlt-eval-{job_id}", daemon=True)
        self._ready = False

    # -- runner side ---------------------------------------------------------------------------
    def start(self) -> None:
        """Plan the measurement (cheap: no model is loaded here) and start the thread that loads and scores."""
        try:
            self._plan()
        except Exception as e:  # noqa: BLE001 - training must survive any evaluation problem
            self._fail(e)
            return
        self._thread.start()

    def offer(self, checkpoints: list[Any]) -> None:
        """Every valid intermediate checkpoint the runner knows of; the due ones are queued once each."""
        with self._cond:
            if self._closing or self.failed or (self.decision is not None and self.decision.stop):
                return
            last = self.spec.training.max_steps  # the final weights: the evaluation after training scores them
            due = (c for c in checkpoints if c.valid and not c.final and c.step and int(c.step) < last)
            for c in sorted(due, key=lambda c: c.step):
                bucket = int(c.step) // self.every
                if bucket > self._bucket:
                    self._bucket = bucket
                    link = self._link(int(c.step), Path(c.path))
                    if link is not None:
                        self._pending.append((int(c.step), link, Path(c.path).resolve()))
                        self._cond.notify()

    def _link(self, step: int, path: Path) -> Path | None:
        """A hard link to the checkpoint, made as soon as it is saved: the trainer's own rotation (output.save.keep)
        may delete its file before it is scored, and the best one must outlive the run."""
        dest = self.folder / "checkpoints" / f"{self.spec.name}_{step:09d}.safetensors"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            try:
                os.link(path, dest)
            except OSError:
                shutil.copy2(path, dest)  # another filesystem: a copy keeps size and mtime
        except OSError:
            return None
        return dest

    def drain(self) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def close(self, timeout: float | None = None) -> LiveState:
        """Stop taking checkpoints; the one being scored is finished (the kept ones not reached yet are scored by
        the evaluation after training). Returns what was scored, with the loaded models to hand over."""
        with self._cond:
            self._closing = True
            dropped = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        for _step, link, _src in dropped:  # never scored: the trainer's own file (if kept) is what counts
            link.unlink(missing_ok=True)
        if self._thread.is_alive():
            self._thread.join(timeout)
        rows = list(self.rows)
        best = self._best(rows)
        if self._thread.is_alive():  # still drawing past the timeout: keep its models out of the handover
            return LiveState(self.every, self.fp, rows, self.decision, self.failed or "still running", best)
        return LiveState(self.every, self.fp, rows, self.decision, self.failed, best, scorer=self._scorer,
                         cache=self._cache, train_emb=self.train_emb)

    def _best(self, rows: list[dict[str, Any]]) -> int | None:
        if not any(not r.get("base") for r in rows):
            return None
        return pick_best(rows, self.opts.rule).step

    # -- evaluation thread ---------------------------------------------------------------------
    def _say(self, message: str) -> None:
        """Narration goes to <job>/eval_live/log.txt: a phase event would tell `zlt status` training had ended."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / "log.txt", "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        except OSError:
            pass

    def _run(self) -> None:
        link: Path | None = None
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if self._closing:
                        return
                    step, link, original = self._pending.popleft()
                if not self._ready:
                    self._setup()
                self._score(step, link, original)
                link = None
                if self.decision is not None and self.decision.stop:
                    return
        except Exception as e:  # noqa: BLE001 - training must survive any evaluation problem
            if link is not None and not any(r.get("source") == str(link) for r in self.rows):
                link.unlink(missing_ok=True)  # the checkpoint being scored when it failed: not zlt's to keep
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        text = f"{e.message}" + (f" (hint: {e.hint})" if e.hint else "") if isinstance(e, ZltError) \
            else f"{type(e).__name__}: {e}"
        self.failed = text
        self.events.put(Warning_(message=f"evaluation during training stopped: {text}; training goes on "
                                 "and the kept checkpoints are evaluated after it", code="eval_failed"))

    def _plan(self) -> None:
        spec, opts = self.spec, self.opts
        self.prompts = build_prompts(opts.prompts, spec.trigger)
        check_grid(len(self.prompts), opts.seeds)
        self.settings = settings_from_spec(spec, opts)
        base_seed = spec.training.sample.seed
        self.seeds = [base_seed + i for i in range(opts.seeds)]
        train_dir = self.train_dir if self.train_dir is not None else Path(spec.dataset.path)
        paths = list_images(train_dir)
        if not paths:
            raise BadInputError(f"{train_dir}: no training image to compare against",
                                hint="evaluation needs the prepared dataset's images")
        self.fp = fingerprint(opts.clip, [p.text for p in self.prompts], self.seeds, self.settings.to_dict(),
                              train_dir, len(paths))
        self.train_paths, self.train_source = paths, train_dir
        self.folder.mkdir(parents=True, exist_ok=True)
        self._restore()

    def _setup(self) -> None:
        spec, opts = self.spec, self.opts
        if self._scorer is None:
            require_clip(opts.clip)
            self._say(f"loading metric model {opts.clip}")
            self._scorer = ClipScorer(opts.clip, device=opts.device or default_device(opts.gpu))
        skipped: list[str] = []
        self.train_emb = embed_training_images(self._scorer, self.train_paths, self.train_source, skipped,
                                               hint="check the prepared dataset")
        for note in skipped:
            self._say(note)
        if self._image_source is None:
            self.base_model = spec.model.base.model_dump(mode="json")
            self.plan = plan_device(self.base_model, _free_gb(opts.gpu), opts.gpu)
            self._say(f"loading pipeline {self.settings.base_model} on {self.plan.device} (evaluation while training)")
            self._cache = PipelineCache(max_pipelines=1, max_adapters=2)
            self._cache.entry(self.base_model, self.plan)
        self._ready = True

    def _restore(self) -> None:
        """A resumed job keeps the rows of its earlier attempts (same measurement, unchanged files)."""
        path = self.folder / ROWS_FILE
        if not self.resume or not path.is_file():
            return
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return
        if doc.get("fingerprint") != self.fp:
            return
        for r in doc.get("rows") or []:
            files = [Path(str(r.get(k))) for k in ("source", "trainer_file") if r.get(k)]
            if r.get("base") or any(file_stamp(f) == r.get("source_stamp") for f in files):
                self.rows.append(r)
        trained = [r["step"] for r in self.rows if not r.get("base")]
        if trained:
            with self._cond:
                self._bucket = max(self._bucket, max(trained) // self.every)

    def _draw(self, lora: Path | None, scale: float) -> list[Any]:
        s = self.settings
        prompts = [p.text for p in self.prompts]
        if self._image_source is not None:
            return self._image_source(lora, prompts, len(self.seeds), self.seeds[0])
        ref = ArtifactRef(id=self.job_id, path=self.job_dir, base_model=self.base_model, trigger="")
        assert lora is not None
        use = ResolvedLora(artifact=ref, file=lora, sha256=sha256_file(lora), scale=scale)
        with self._cache.use(self.base_model, self.plan) as entry:
            self._cache.activate(entry, [use])
            return draw(entry.pipe, prompts, len(self.seeds), self.seeds[0], steps=s.steps, guidance=s.guidance,
                        width=s.size, height=s.size)

    def _score(self, step: int, source: Path, original: Path) -> None:
        stamp = file_stamp(source)
        if stamp is None:
            self._say(f"step {step}: checkpoint {source} is gone; skipped")
            return
        lora = self._convert(step, source)
        try:
            if not any(r.get("base") for r in self.rows):
                self._say(f"base model: drawing {len(self.prompts) * len(self.seeds)} image(s)")
                self._add_row(0, None, None, self._timed(lambda: self._draw(lora, 0.0)))
                base = self.rows[-1]
                self.events.put(Evaluation(step=0, base=True, **_four(base["metrics"])))
            self._say(f"step {step}: drawing {len(self.prompts) * len(self.seeds)} image(s)")
            row = self._add_row(step, source, stamp, self._timed(lambda: self._draw(lora, self.settings.scale)))
            row["trainer_file"] = str(original)
        finally:
            lora.unlink(missing_ok=True)
        self._keep_best_link()
        decision = None
        if self.early.enable:
            decision = decide(self.rows, patience=self.early.patience, min_delta=self.early.min_delta,
                              min_step=self.early.min_step)
            row["early_stop"] = decision.to_dict()
            self.decision = decision
        self._save()
        self.events.put(Evaluation(step=step, **_four(row["metrics"]),
                                   decision=None if decision is None else "stop" if decision.stop else "continue",
                                   reason=decision.reason if decision else None))
        if decision is not None and decision.stop:
            self.request_stop("early_stop")

    def _keep_best_link(self) -> None:
        """Only the best checkpoint so far keeps its link; the others are the trainer's to keep or rotate."""
        best = self._best(self.rows)
        for r in self.rows:
            if r.get("base") or not r.get("source"):
                continue
            keep = r["step"] == best
            if not keep:
                Path(r["source"]).unlink(missing_ok=True)
            r["preserved"] = keep

    def _timed(self, fn: Callable[[], list[Any]]) -> tuple[list[Any], float]:
        t0 = time.perf_counter()
        return fn(), time.perf_counter() - t0

    def _add_row(self, step: int, source: Path | None, stamp: dict[str, int] | None,
                 drawn: tuple[list[Any], float]) -> dict[str, Any]:
        images, gen_s = drawn
        n = len(self.prompts) * len(self.seeds)
        if len(images) != n:
            raise RuntimeError(f"image source returned {len(images)} images for {n} requests")
        t1 = time.perf_counter()
        # through the module: the one scoring of zlt eval, which tests script there
        metrics = scoring.score_images(self._scorer, images, self.prompts, self.seeds, self.train_emb)
        base = source is None
        row: dict[str, Any] = {
            "step": step, "label": "base" if base else f"step {step}", "base": base,
            "source": None if base else str(source), "source_stamp": stamp, "metrics": metrics,
            "timing": {"generate_s": round(gen_s, 4), "metrics_s": round(time.perf_counter() - t1, 4)},
            "scored_at": time.time(), "during_training": True,
        }
        cells = [(i, self.seeds[0] + i * len(self.seeds) + j) for i in range(len(self.prompts))
                 for j in range(len(self.seeds))]
        names = save_row_images(self.folder, row, images, cells)
        row["images"] = [str(self.folder / n.removeprefix("eval/")) for n in names]
        self.rows = [r for r in self.rows if not (r["step"] == step and r.get("base") == base)] + [row]
        self.rows.sort(key=lambda r: (not r.get("base"), r["step"]))
        return row

    def _convert(self, step: int, source: Path) -> Path:
        """The checkpoint in the key format the artifact will hold (what `zlt eval` would load from it)."""
        weights, _meta = read_lora(source)
        dest = self.folder / f".lora_step_{step:06d}.safetensors"
        write_file(dest, render_lora(weights, self.spec.output.key_format), {"format": "pt"})
        return dest

    def _save(self) -> None:
        atomic_write_json(self.folder / ROWS_FILE, {
            "schema": SCHEMA, "job_id": self.job_id, "fingerprint": self.fp, "every": self.every,
            "rows": self.rows, "early_stop": self.decision.to_dict() if self.decision else None,
        })


def _free_gb(gpu: int | None) -> float | None:
    """What the running trainer leaves on the GPU (less a GiB for its peaks): the pipeline is planned for that, not
    for the whole card (float8 and CPU offload when little is left). None without CUDA."""
    try:
        import torch  # lazy: pulls torch

        if not torch.cuda.is_available():
            return None
        free, _total = torch.cuda.mem_get_info(gpu or 0)
    except (ImportError, RuntimeError):
        return None
    return max(free / 2**30 - 1.0, 1.0)


def _four(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ("style_similarity", "prompt_alignment", "memorisation", "diversity")}
