"""evaluate_artifact's wiring with fakes: an image source and a scorer whose embeddings are chosen by the test
(carried in each image's `info`), so the report's numbers and the rule's pick are known in advance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tests.fixtures.artifact_jobs import make_job_dir
from zlt.artifacts import collect_artifact, verify_artifact
from zlt.eval.best import Rule
from zlt.eval.evaluate import EvalOptions, evaluate_artifact
from zlt.flows.after_training import evaluate_after_training

DIM = 8
STYLE, P1, P2 = 0, 1, 2  # embedding axes: the training style, prompt 1's content, prompt 2's content
WEIGHTS = {0: 0.2, 250: 0.4, 500: 0.6, 750: 1.2, 1000: 3.0}  # style weight per step; content weight is 1


def axis(i: int, scale: float = 1.0) -> np.ndarray:
    v = np.zeros(DIM)
    v[i] = scale
    return v


def image_with(emb: np.ndarray) -> Image.Image:
    im = Image.new("RGB", (16, 16), (128, 128, 128))
    im.info["emb"] = json.dumps(emb.tolist())
    return im


class FakeScorer:
    def images(self, images):
        return np.stack([np.array(json.loads(im.info["emb"])) for im in images])

    def texts(self, texts):
        return np.stack([axis(P1) if "lighthouse" in t else axis(P2) for t in texts])


class StyleRamp:
    """Checkpoint at step s draws w(s) * style + 1 * content (+ a small per-seed direction, for diversity)."""

    def __init__(self, identical: bool = False) -> None:
        self.calls: list[tuple[int, list[str], int, int]] = []
        self.identical = identical

    def __call__(self, target, prompts, count, seed):
        self.calls.append((target.step, prompts, count, seed))
        out = []
        for p in prompts:
            content = axis(P1) if "lighthouse" in p else axis(P2)
            for j in range(count):
                emb = axis(STYLE) if self.identical else axis(STYLE, WEIGHTS[target.step]) + content + axis(3 + j, 0.01)
                out.append(image_with(emb))
        return out


@pytest.fixture
def artifact(tmp_path: Path, zlt_home: Path) -> str:
    jd = make_job_dir(tmp_path / "jobs", fmt="diffusers")
    prepared = jd / "prepared"
    prepared.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("emb", json.dumps(axis(STYLE).tolist()))
    Image.new("RGB", (16, 16)).save(prepared / "a.png", pnginfo=info)
    return collect_artifact(jd, home=zlt_home).id


PROMPTS = ["[trigger] a lighthouse", "[trigger] a fox"]


def test_rows_metrics_and_pick_follow_the_constructed_embeddings(artifact: str, zlt_home: Path):
    src = StyleRamp()
    opts = EvalOptions(prompts=PROMPTS, seeds=2, rule=Rule(alignment_tolerance=0.15))
    report = evaluate_artifact(zlt_home, artifact, opts, image_fn=src, scorer=FakeScorer())
    assert [c[0] for c in src.calls] == [0, 250, 500, 750, 1000]
    assert src.calls[0][1] == ["<zstyle> a lighthouse", "<zstyle> a fox"] and src.calls[0][2:] == (2, 42)
    rows = {r["step"]: r["metrics"] for r in report["checkpoints"]}
    w = WEIGHTS[500]
    assert rows[500]["style_similarity"] == pytest.approx(w / np.sqrt(w * w + 1 + 1e-4), abs=1e-6)
    assert rows[500]["prompt_alignment"] == pytest.approx(1 / np.sqrt(w * w + 1 + 1e-4), abs=1e-6)
    assert rows[1000]["memorisation"] > rows[250]["memorisation"]
    assert 0 < rows[0]["diversity"] < 1e-3
    # alignment floor = 0.85 x base 0.98 = 0.834: steps 750 and 1000 fall below it; 500 has the best style left
    assert report["best"]["step"] == 500 and report["best"]["passed"]
    assert report["best"]["file"] == "checkpoints/step_000500.safetensors"
    assert verify_artifact(zlt_home, artifact).ok
    from zlt.artifacts import list_artifacts

    assert list_artifacts(zlt_home)[0]["best_step"] == 500


def test_default_tolerance_picks_an_earlier_step(artifact: str, zlt_home: Path):
    report = evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS), image_fn=StyleRamp(),
                               scorer=FakeScorer())
    assert report["best"]["step"] == 250  # 500's alignment 0.857 < 0.90 x 0.98


def test_identical_images_give_style_one_and_diversity_zero(artifact: str, zlt_home: Path):
    report = evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS, checkpoints="last"),
                               image_fn=StyleRamp(identical=True), scorer=FakeScorer())
    assert [r["step"] for r in report["checkpoints"]] == [0, 1000]
    for r in report["checkpoints"]:
        assert r["metrics"]["style_similarity"] == pytest.approx(1.0)
        assert r["metrics"]["diversity"] == pytest.approx(0.0, abs=1e-12)


def test_a_second_evaluation_replaces_the_first_and_verify_still_passes(artifact: str, zlt_home: Path):
    evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS, seeds=2), image_fn=StyleRamp(),
                      scorer=FakeScorer())
    report = evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS[:1], seeds=1, checkpoints="250"),
                               image_fn=StyleRamp(), scorer=FakeScorer())
    folder = Path(report["eval_dir"])
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["base", "step_000250"]
    assert verify_artifact(zlt_home, artifact).ok


class FakeCtx:
    def __init__(self) -> None:
        self.phases: list[str] = []
        self.warnings: list[str] = []

    def phase_event(self, phase: str, message: str = "") -> None:
        self.phases.append(f"{phase}: {message}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_training_hook_is_off_by_default_and_a_failed_evaluation_only_warns(artifact: str, zlt_home: Path):
    from zlt.spec.models import JobSpec

    ctx = FakeCtx()
    assert evaluate_after_training(JobSpec(), artifact, zlt_home, ctx) is None and not ctx.phases
    spec = JobSpec(eval={"enable": True, "models": {"clip": "openai/clip-vit-large-patch14"}})
    assert evaluate_after_training(spec, artifact, zlt_home, ctx) is None  # offline, not cached: exit-3 error
    assert ctx.phases and "evaluation failed" in ctx.warnings[0] and f"zlt eval {artifact}" in ctx.warnings[0]


def test_every_metric_is_reported_for_every_row_including_the_base(artifact: str, zlt_home: Path):
    report = evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS), image_fn=StyleRamp(),
                               scorer=FakeScorer())
    keys = {"style_similarity", "prompt_alignment", "memorisation", "diversity", "kid_clip", "kid_clip_std",
            "fid_clip", "kid_note"}
    assert report["checkpoints"][0]["base"]
    for row in report["checkpoints"]:
        assert set(row["metrics"]) == keys, row["step"]


def test_a_prompt_equal_to_a_training_caption_is_reported(artifact: str, zlt_home: Path):
    first = evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS, checkpoints="last"),
                              image_fn=StyleRamp(), scorer=FakeScorer())
    assert first["warnings"] == []
    folder = Path(first["train_images"]["folder"])
    (folder / "a.txt").write_text("<zstyle> a fox", encoding="utf-8")
    report = evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS, checkpoints="last"),
                               image_fn=StyleRamp(), scorer=FakeScorer())
    assert report["warnings"] == ["prompt is a training caption (not held out): 'a fox'"]


def test_a_grid_larger_than_64_images_per_checkpoint_is_refused_before_drawing(artifact: str, zlt_home: Path):
    from zlt.core.errors import BadInputError

    src = StyleRamp()
    with pytest.raises(BadInputError, match="at most 64"):
        evaluate_artifact(zlt_home, artifact, EvalOptions(seeds=9), image_fn=src, scorer=FakeScorer())
    assert src.calls == []


def test_a_stop_between_rows_leaves_the_artifact_untouched(artifact: str, zlt_home: Path):
    class Stop(Exception):
        pass

    def rows_done(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS), image_fn=StyleRamp(),
                          scorer=FakeScorer(), rows_done=rows_done)
    from zlt.artifacts import get_artifact

    folder = Path(get_artifact(zlt_home, artifact)["path"])
    assert not (folder / "eval").exists() and verify_artifact(zlt_home, artifact).ok
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".staging-")]


def test_the_spec_eval_section_gives_the_defaults_and_arguments_win(artifact: str, zlt_home: Path):
    from zlt.eval.options import from_spec, options_for
    from zlt.spec.models import JobSpec

    opts = from_spec(JobSpec(eval={"prompts": ["a cat"], "seeds": 3, "checkpoints": "last", "scale": 0.8,
                                   "alignment_tolerance": 0.2, "memorisation_max": 0.9,
                                   "models": {"clip": "/models/clip"}}))
    assert (opts.prompts, opts.seeds, opts.checkpoints, opts.scale, opts.clip) == (["a cat"], 3, "last", 0.8,
                                                                                   "/models/clip")
    assert (opts.rule.alignment_tolerance, opts.rule.memorisation_max) == (0.2, 0.9)
    assert from_spec(JobSpec()).prompts is None  # empty list: the default subjects
    over = options_for(zlt_home, artifact, seeds=5, clip=None)
    assert over.seeds == 5 and over.clip == "openai/clip-vit-large-patch14"


def test_each_row_reports_its_spread_and_a_pick_inside_it_is_not_distinguishable(artifact: str, zlt_home: Path):
    """Every row drew the same images: the pick differs from the base and the runner-up by nothing, and the report,
    the summary and the table say so instead of naming it best with no caveat. No target was asked for: none shown."""
    from zlt.eval.table import table_lines

    report = evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS, seeds=2),
                               image_fn=StyleRamp(identical=True), scorer=FakeScorer())
    best = report["best"]
    assert best["distinguishable_from_base"] is False and best["distinguishable_from_runner_up"] is False
    assert best["vs_base"]["n"] == 4 and best["vs_base"]["difference"] == pytest.approx(0.0, abs=1e-9)
    assert "not distinguishable from the base model" in best["caveat"]
    assert "not distinguishable from the runner-up step 500" in best["caveat"]
    spread = report["checkpoints"][1]["spread"]
    assert spread["style_similarity"]["n"] == 4 and spread["diversity"]["n"] == 2
    assert "targets" not in report
    lines = table_lines(report["checkpoints"], best["step"])
    assert "±" in lines[1] and lines[-1].startswith("(± : 95% interval")
    meta = json.loads((Path(report["eval_dir"]).parent / "training_meta.json").read_text())
    assert meta["eval"]["caveat"] == best["caveat"] and meta["eval"]["scale"] == 1.0


def test_a_pick_clear_of_the_spread_is_distinguishable_and_targets_come_when_asked(artifact: str, zlt_home: Path):
    report = evaluate_artifact(zlt_home, artifact, EvalOptions(prompts=PROMPTS, seeds=2, targets=True),
                               image_fn=StyleRamp(), scorer=FakeScorer())
    best = report["best"]
    assert best["step"] == 250 and best["distinguishable_from_base"] is True
    assert best["vs_base"]["difference"] > best["vs_base"]["ci95"] >= 0
    assert best["caveat"] is None or "base" not in best["caveat"]
    assert set(report["targets"]) == {"250", "500", "750", "1000"}
    sp = report["checkpoints"][0]["spread"]["style_similarity"]
    assert sp["std"] >= 0 and sp["ci95"] is not None
