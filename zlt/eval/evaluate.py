"""`evaluate_artifact`: every selected checkpoint of an artifact (and the base model, as step 0) draws the same
grid of held-out prompts x seeds; CLIP scores it against the training images; the rule picks the best step;
eval/ (report.json, contact_sheet.png, curves.png, the images) goes into the artifact.

Order of work, cheapest refusal first: checkpoints and prompts (exit 2), training images (exit 2), metric model
(exit 3), then the pipeline is loaded once and LoRA weights are swapped per checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_json
from zlt.dataset.images import DATASET_FORMATS, open_user_image
from zlt.eval import metrics as m
from zlt.eval.best import Rule, pick_best
from zlt.eval.clip import ClipScorer
from zlt.eval.images import DrawSettings, ImageFn, InferImages
from zlt.eval.live_rows import LivePrior, fingerprint
from zlt.eval.pictures import contact_sheet, curves, thumb_size
from zlt.eval.plan import (
    ArtifactView,
    list_images,
    open_artifact,
    select_targets,
    training_captions,
    training_image_dir,
)
from zlt.eval.prompts import EvalPrompt, build_prompts, training_overlap
from zlt.eval.record import publish_eval, staging_dir
from zlt.eval.spread import row_spread, verdict
from zlt.preflight.clip_model import DEFAULT_CLIP, require_clip
from zlt.render.common import sample_steps_guidance

SCHEMA = "zlt.eval_report/1"
MAX_GRID = 64  # images per checkpoint (zlt generate draws at most 64 per request)
USER_TARGETS = {"style_similarity": 0.85}  # the user's "CLIP similarity > 0.85"; FID/LPIPS targets: see docs


@dataclass
class EvalOptions:
    prompts: list[str] | None = None
    seeds: int = 2
    checkpoints: str = "all"
    clip: str = DEFAULT_CLIP
    scale: float = 1.0
    steps: int | None = None
    guidance: float | None = None
    size: int | None = None
    train_images: Path | None = None
    rule: Rule = field(default_factory=Rule)
    device: str | None = None  # the CLIP model's device (default: cuda when there is one, else cpu)
    gpu: int | None = None  # CUDA index the images are drawn on (a worker's slot); None: zlt generate's default
    keep_images: bool = True
    job_id: str | None = None  # the evaluation job this runs in (None for a foreground `zlt eval`)
    targets: bool = False  # add the report's `targets` block (the user's CLIP > 0.85; FID/LPIPS not comparable)


def check_grid(n_prompts: int, seeds: int) -> None:
    if seeds < 1 or seeds > 16:
        raise BadInputError(f"--seeds {seeds}: must be 1..16", hint="2 seeds give diversity a pair per prompt")
    if n_prompts * seeds > MAX_GRID:
        raise BadInputError(f"--seeds {seeds} x {n_prompts} prompts = {n_prompts * seeds} images per checkpoint; "
                            f"at most {MAX_GRID}", hint="use fewer prompts or seeds")


def draw_settings(view: ArtifactView, opts: EvalOptions) -> DrawSettings:
    """The artifact's inference settings: its spec's sampling steps/guidance and training resolution."""
    if view.spec is not None:
        return settings_from_spec(view.spec, opts)
    base = (view.meta.get("base_model") or {})
    s = DrawSettings(base_model=base.get("name") or "Tongyi-MAI/Z-Image-Turbo",
                     precision=base.get("precision") or "bf16",
                     size=int((view.meta.get("dataset") or {}).get("resolution") or 1024))
    return _overrides(s, opts)


def settings_from_spec(spec: Any, opts: EvalOptions) -> DrawSettings:
    """A spec's inference settings (also what the evaluation while training draws with)."""
    steps, guidance = sample_steps_guidance(spec)  # the spec's, else the variant's (turbo 9/0, base 30/4)
    s = DrawSettings(base_model=spec.model.base.name, precision=spec.model.base.precision, steps=steps,
                     guidance=guidance, size=spec.dataset.resolution)
    return _overrides(s, opts)


def _overrides(s: DrawSettings, opts: EvalOptions) -> DrawSettings:
    s.scale = opts.scale
    if opts.steps is not None:
        s.steps = opts.steps
    if opts.guidance is not None:
        s.guidance = opts.guidance
    if opts.size is not None:
        s.size = opts.size
    if s.size % 16:
        raise BadInputError(f"--size {s.size}: must be a multiple of 16", hint=f"e.g. --size {s.size // 16 * 16 or 16}")
    return s


def score_images(scorer: Any, images: list[Any], prompts: list[EvalPrompt], seeds: list[int], train_emb: Any) -> dict[str, Any]:
    import numpy as np

    emb = scorer.images(images)
    texts = scorer.texts([p.plain for p in prompts])
    per_image_text = np.repeat(texts, len(seeds), axis=0)  # images are prompt-major: p0s0, p0s1, p1s0, ...
    groups = [emb[i * len(seeds):(i + 1) * len(seeds)] for i in range(len(prompts))]
    out = {
        "style_similarity": m.style_similarity(emb, train_emb),
        "prompt_alignment": m.prompt_alignment(emb, per_image_text),
        "memorisation": m.memorisation(emb, train_emb),
        "diversity": m.diversity(groups),
    }
    out.update(m.distribution_metrics(emb, train_emb))
    out["per_image"] = m.per_image(emb, train_emb, per_image_text, groups)  # the spread's raw values (zlt.eval.spread)
    return out


def evaluate_artifact(
    home: Path, artifact_id: str, opts: EvalOptions | None = None, *,
    image_fn: ImageFn | None = None, scorer: Any = None, pipeline_cache: Any = None,
    progress: Callable[[str], None] | None = None, rows_done: Callable[[int, int], None] | None = None,
    prior: LivePrior | None = None,
) -> dict[str, Any]:
    """Evaluate, write eval/ into the artifact, record the best step. Returns the report (report.json's content).

    `progress(message)` narrates; `rows_done(done, total)` is called before each row and may raise to stop
    (nothing is written into the artifact before the last row is scored). `prior`: rows scored while the job
    trained (eval.every); a row whose checkpoint file is unchanged and whose measurement is the same is reused,
    not drawn again."""
    opts = opts or EvalOptions()
    say = progress or (lambda _msg: None)
    check_grid(1, opts.seeds)
    view = open_artifact(home, artifact_id)
    targets = select_targets(view, opts.checkpoints)
    prompts = build_prompts(opts.prompts, view.trigger)
    settings = draw_settings(view, opts)
    check_grid(len(prompts), opts.seeds)
    base_seed = view.spec.training.sample.seed if view.spec is not None else 42
    seeds = [base_seed + i for i in range(opts.seeds)]  # image k of the grid is drawn with base_seed + k
    train_dir = training_image_dir(view, opts.train_images)
    train_paths = list_images(train_dir)
    warnings = [f"prompt is a training caption (not held out): {p!r}"
                for p in training_overlap(prompts, training_captions(train_paths), view.trigger)]
    if scorer is None:
        require_clip(opts.clip)  # exit 3 before the (much larger) pipeline is loaded
    t_start = time.perf_counter()

    if scorer is None:
        say(f"loading metric model {opts.clip}")
        scorer = ClipScorer(opts.clip, device=opts.device or default_device(opts.gpu))
    fp = fingerprint(opts.clip, [p.text for p in prompts], seeds, settings.to_dict(), train_dir, len(train_paths))
    if prior is not None and prior.train_emb is not None and prior.fingerprint == fp:
        train_emb = prior.train_emb  # the same images through the same model while training
    else:
        train_emb = embed_training_images(scorer, train_paths, train_dir, warnings, hint="pass --train-images DIR")
    reuse = {t: _prior_row(prior, fp, view, t) for t in targets}
    load_s = 0.0
    if image_fn is None and any(r is None for r in reuse.values()):
        t_load = time.perf_counter()
        say(f"loading pipeline {settings.base_model}")
        image_fn = InferImages(home, view.id, settings, cache=pipeline_cache, gpu=opts.gpu)
        image_fn.warm()
        load_s = time.perf_counter() - t_load

    n = len(prompts) * len(seeds)
    cells = [(i, seeds[0] + i * len(seeds) + j) for i in range(len(prompts)) for j in range(len(seeds))]
    rows: list[dict[str, Any]] = []
    thumbs: list[list[Any]] = []  # full images go to disk as they come: memory holds one row at a time

    staging = staging_dir(view.folder)
    try:
        for i, t in enumerate(targets):
            if rows_done is not None:
                rows_done(i, len(targets))
            earlier = reuse[t]
            if earlier is not None:
                images = _load_images(earlier["images"])
                row = {"step": t.step, "label": t.label, "base": t.base, "final": t.final, "file": t.file,
                       "metrics": dict(earlier["metrics"]), "timing": dict(earlier.get("timing") or {}),
                       "scored_during_training": True}
                row["per_image"] = row["metrics"].pop("per_image", None)
                say(f"{t.label}: scored while training (reused)")
                if opts.keep_images:
                    row["images"] = save_row_images(staging, row, images, cells)
                rows.append(row)
                thumbs.append([_thumb(im, settings.size) for im in images])
                continue
            assert image_fn is not None
            say(f"{t.label}: drawing {n} image(s)")
            t0 = time.perf_counter()
            images = image_fn(t, [p.text for p in prompts], len(seeds), seeds[0])
            gen_s = time.perf_counter() - t0
            if len(images) != n:
                raise RuntimeError(f"image source returned {len(images)} images for {n} requests")
            t1 = time.perf_counter()
            row = {"step": t.step, "label": t.label, "base": t.base, "final": t.final, "file": t.file,
                   "metrics": score_images(scorer, images, prompts, seeds, train_emb)}
            row["per_image"] = row["metrics"].pop("per_image", None)
            row["timing"] = {"generate_s": round(gen_s, 4), "metrics_s": round(time.perf_counter() - t1, 4)}
            if opts.keep_images:
                row["images"] = save_row_images(staging, row, images, cells)
            rows.append(row)
            thumbs.append([_thumb(im, settings.size) for im in images])
        pick = pick_best(rows, opts.rule)
        honesty = verdict(rows, pick.step)  # is the pick told apart from the base and the runner-up?
        for row in rows:
            row["spread"] = row_spread(row.pop("per_image", None))
        report = _report(view, opts, settings, prompts, seeds, train_dir, len(train_emb), rows, pick, warnings,
                         load_s=load_s, total_s=time.perf_counter() - t_start)
        report["best"].update(honesty)
        report["inference"] = getattr(image_fn, "ran", None)  # what drew: device and dtype (fp32 on a CPU)
        if report["inference"]:
            report["settings"]["precision"] = report["inference"]["dtype"]
        if prior is not None:
            report["during_training"] = _during_training(prior, fp)
        _write(home, view, report, rows, thumbs, [f"p{i + 1} s{s}" for i, s in cells], staging)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def embed_training_images(scorer: Any, paths: list[Path], train_dir: Path, warnings: list[str], *, hint: str) -> Any:
    """CLIP embeddings of the readable training images (an unreadable one is a warning); BadInputError when none is
    readable. What style similarity and memorisation compare against."""
    images = []
    for p in paths:
        try:
            with open_user_image(p, DATASET_FORMATS) as im:  # a user's files: only the dataset formats are decoded
                images.append(im.convert("RGB"))
        except OSError as e:
            warnings.append(f"training image {p} skipped: {e}")
    if not images:
        raise BadInputError(f"{train_dir}: no readable training image", hint=hint)
    return scorer.images(images)


def _prior_row(prior: LivePrior | None, fp: str, view: ArtifactView, t: Any) -> dict[str, Any] | None:
    if prior is None:
        return None
    row = prior.base_row(fp) if t.base else prior.row_for(fp, t.step, view.source_of(t))
    if row is None or not all(Path(p).is_file() for p in row.get("images") or [None]):
        return None
    return row


def _load_images(paths: list[str]) -> list[Any]:
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            out.append(im.copy())
    return out


def _during_training(prior: LivePrior, fp: str) -> dict[str, Any]:
    """Every row scored while training (also those whose checkpoint was not kept), and the early-stop verdict."""
    return {**(prior.summary or {}), "same_measurement": fp == prior.fingerprint,
            "rows": [{"step": r["step"], "base": bool(r.get("base")), "metrics": r["metrics"],
                      "early_stop": r.get("early_stop")} for r in prior.rows]}


def save_row_images(staging: Path, row: dict[str, Any], images: list[Any], cells: list[tuple[int, int]]) -> list[str]:
    sub = staging / "images" / ("base" if row["base"] else f"step_{row['step']:06d}")
    sub.mkdir(parents=True, exist_ok=True)
    names = []
    for (i, s), im in zip(cells, images, strict=True):
        name = f"p{i + 1:02d}_s{s}.png"
        im.save(sub / name, format="PNG")
        names.append(f"eval/images/{sub.name}/{name}")
    return names


def _thumb(im: Any, size: int) -> Any:
    from PIL import Image

    side = thumb_size(size)
    out = im.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
    out.info = dict(im.info)  # keeps what a caller attached (the tests' embeddings)
    return out


def default_device(gpu: int | None = None) -> str:
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{gpu}" if gpu is not None else "cuda"


def _targets_met(row: dict[str, Any]) -> dict[str, Any]:
    m = row["metrics"]
    v = m.get("style_similarity")
    return {"style_similarity>0.85": bool(v is not None and v > USER_TARGETS["style_similarity"]),
            "fid<50": "not comparable: FID here is on CLIP features, the user's target assumes Inception features",
            "lpips<0.2": "not comparable: diversity here is a CLIP cosine distance, not LPIPS (see docs/eval.md)"}


def _report(view: ArtifactView, opts: EvalOptions, settings: DrawSettings, prompts: list[EvalPrompt],
            seeds: list[int], train_dir: Path, n_train: int, rows: list[dict[str, Any]], pick: Any,
            warnings: list[str], *, load_s: float, total_s: float) -> dict[str, Any]:
    from datetime import datetime, timezone

    best_row = next((r for r in rows if r["step"] == pick.step and not r["base"]), None)
    trained = [r for r in rows if not r["base"]]
    return {
        "schema": SCHEMA,
        "artifact_id": view.id,
        "job_id": opts.job_id,
        "eval_dir": str(view.folder / "eval"),
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "clip_model": opts.clip,
        "settings": {**settings.to_dict(), "seed": seeds[0], "seeds_per_prompt": len(seeds),
                     "image_seeds": "image k of a row (prompt-major) is drawn with seed + k",
                     "prompts": [p.text for p in prompts],
                     "prompts_plain": [p.plain for p in prompts]},
        "train_images": {"folder": str(train_dir), "count": n_train},
        "metric_notes": {
            "diversity": "mean pairwise CLIP cosine distance across seeds (LPIPS needs ImageNet backbone weights "
                         "zlt cannot ship; see docs/eval.md)",
            "kid_clip": "KID on CLIP image features (not Inception), unbiased MMD^2 with a cubic kernel",
            "fid_clip": "FID on CLIP image features, information only (biased on small sets)",
        },
        "checkpoints": rows,
        "best": {**pick.to_dict(), "file": best_row["file"] if best_row else None},
        **({"targets": {str(r["step"]): _targets_met(r) for r in trained}} if opts.targets else {}),
        "timing": {"pipeline_load_s": round(load_s, 4), "total_s": round(total_s, 4),
                   "per_checkpoint_s": round(sum(r["timing"]["generate_s"] + r["timing"]["metrics_s"]
                                                 for r in rows) / max(1, len(rows)), 4)},
        "warnings": warnings,
    }


def _write(home: Path, view: ArtifactView, report: dict[str, Any], rows: list[dict[str, Any]],
           thumbs: list[list[Any]], columns: list[str], staging: Path) -> None:
    """Contact sheet, curves and report into `staging` (which already holds the images), then publish it."""
    best = report["best"]["step"]
    geo = contact_sheet(rows, thumbs, columns, staging / "contact_sheet.png", best)
    report["contact_sheet"] = {"file": "eval/contact_sheet.png", "rows": geo.rows, "cols": geo.cols,
                               "thumb": geo.thumb, "size": list(geo.size)}
    note = curves(rows, view.meta.get("curve"), staging / "curves.png", f"{view.id}: evaluation", best)
    if note:
        report["warnings"].append(note)
    atomic_write_json(staging / "report.json", report)
    summary = {
        "report": "eval/report.json", "evaluated_at": report["evaluated_at"], "clip_model": report["clip_model"],
        "best_step": best, "best_file": report["best"]["file"], "passed": report["best"]["passed"],
        "reason": report["best"]["reason"], "caveat": report["best"].get("caveat"),
        "job_id": report["job_id"],
        "scale": report["settings"]["scale"],  # `ID@best` draws at the scale it was picked at (zlt.infer.resolve)
        "table": [{"step": r["step"], "label": r["label"], **{k: r["metrics"].get(k) for k in (
            "style_similarity", "prompt_alignment", "memorisation", "diversity", "kid_clip", "kid_clip_std",
            "fid_clip")}, "spread": {k: v["ci95"] for k, v in (r.get("spread") or {}).items()}} for r in rows],
    }
    publish_eval(home, view.id, view.folder, staging, summary)
