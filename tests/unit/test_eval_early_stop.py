"""eval.every / eval.early_stop: the rule, the spec section, the live evaluator's bookkeeping, the preflight checks,
the runner's verdict and the collector's keep rule."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from zlt.eval.early_stop import decide


def rows(*pairs, base=(0.5, 0.3), start=250, every=250):
    out = [{"step": 0, "base": True, "metrics": {"style_similarity": base[0], "prompt_alignment": base[1]}}]
    for i, (style, align) in enumerate(pairs):
        out.append({"step": start + i * every, "metrics": {"style_similarity": style, "prompt_alignment": align}})
    return out


# -- the rule --------------------------------------------------------------------------------------------

def test_plateau_with_falling_alignment_stops_and_names_the_best_step():
    d = decide(rows((0.60, 0.30), (0.70, 0.29), (0.701, 0.28), (0.699, 0.27)), patience=2, min_delta=0.005)
    assert d.stop and d.step == 1000 and d.best_step == 750
    assert "plateaued" in d.reason and "falling" in d.reason and "step 1000" in d.reason


def test_still_improving_does_not_stop_even_with_falling_alignment():
    d = decide(rows((0.60, 0.30), (0.65, 0.29), (0.70, 0.28)), patience=1, min_delta=0.005)
    assert not d.stop and d.reason.startswith("still improving")


def test_plateau_alone_does_not_stop():
    d = decide(rows((0.60, 0.28), (0.60, 0.29), (0.60, 0.30)), patience=2, min_delta=0.005)
    assert not d.stop and "not falling" in d.reason


def test_a_gain_smaller_than_min_delta_is_a_plateau():
    assert decide(rows((0.60, 0.30), (0.604, 0.29)), patience=1, min_delta=0.005).stop
    assert not decide(rows((0.60, 0.30), (0.606, 0.29)), patience=1, min_delta=0.005).stop


def test_needs_patience_plus_one_evaluations():
    d = decide(rows((0.60, 0.30), (0.60, 0.29)), patience=2, min_delta=0.005)
    assert not d.stop and "needs 3" in d.reason
    assert not decide(rows(), patience=1, min_delta=0.0).stop


def test_min_step_holds_the_stop_back():
    r = rows((0.60, 0.30), (0.60, 0.29))
    assert decide(r, patience=1, min_delta=0.005, min_step=500).stop
    held = decide(r, patience=1, min_delta=0.005, min_step=1000)
    assert not held.stop and "min_step 1000" in held.reason


def test_the_base_row_is_not_a_checkpoint_and_order_does_not_matter():
    r = rows((0.60, 0.30), (0.60, 0.29), base=(0.99, 0.99))
    assert decide(list(reversed(r)), patience=1, min_delta=0.005).stop


# -- the spec section ------------------------------------------------------------------------------------

def test_early_stop_true_is_short_for_enable_and_defaults_every_to_the_save_interval():
    from zlt.spec.load import load_spec_data

    spec = load_spec_data({"eval": {"early_stop": True}, "output": {"save": {"every": 100}}}).spec
    assert spec.eval.early_stop.enable and spec.eval.early_stop.patience == 2
    assert spec.eval.during_training_every(spec.output.save.every) == 100
    spec = load_spec_data({"eval": {"every": 300, "early_stop": {"enable": True, "patience": 3}}}).spec
    assert spec.eval.during_training_every(spec.output.save.every) == 300
    assert load_spec_data({}).spec.eval.during_training_every(250) is None


def test_eval_every_beyond_max_steps_is_a_field_error():
    from zlt.core.errors import SpecError
    from zlt.spec.load import load_spec_data

    with pytest.raises(SpecError) as e:
        load_spec_data({"training": {"max_steps": 500}, "output": {"save": {"every": 100}}, "eval": {"every": 600}})
    assert "eval.every" in " ".join(e.value.lines()) and "max_steps 500" in " ".join(e.value.lines())
    with pytest.raises(SpecError) as e:
        load_spec_data({"eval": {"early_stop": {"patience": 0}}})
    assert "eval.early_stop.patience" in " ".join(e.value.lines())


# -- the live evaluator ----------------------------------------------------------------------------------

@dataclass
class Ck:
    path: Path
    step: int
    final: bool = False
    valid: bool = True


def _spec(tmp_path: Path, **eval_section):
    from zlt.spec.load import load_spec_data

    return load_spec_data({"name": "wc", "dataset": {"path": str(tmp_path / "ds")},
                           "output": {"save": {"every": 250, "keep": 2}},
                           "eval": {"prompts": ["[trigger] a boat"], "seeds": 1, **eval_section}}).spec


@pytest.mark.parametrize(("every", "due"), [(250, [250, 500, 750, 1000]), (500, [500, 1000]),
                                            (300, [500, 750, 1000]), (1000, [1000])])
def test_offer_queues_the_first_checkpoint_at_or_after_each_multiple_once(tmp_path, every, due):
    from zlt.flows.live_eval import LiveEvaluator

    ev = LiveEvaluator(_spec(tmp_path, every=every), job_id="j", job_dir=tmp_path / "job", train_dir=None, gpu=None,
                       request_stop=lambda r: None)
    cks = _lora_files(tmp_path, [250, 500, 750, 1000])
    for i in range(len(cks)):
        ev.offer(cks[: i + 1])  # the runner offers everything it knows after each save
    ev.offer(cks + [Ck(tmp_path / "out" / "wc.safetensors", 1000, final=True)])
    assert [s for s, _link, _src in ev._pending] == due
    links = [link for _s, link, _src in ev._pending]
    assert all(link.is_file() and os.path.samefile(link, tmp_path / "out" / f"wc_{s:09d}.safetensors")
               for s, link, _src in ev._pending)
    state = ev.close()
    assert not any(link.exists() for link in links)  # never scored: zlt's links go, the trainer's files stay
    assert all(c.path.is_file() for c in cks)
    assert state.rows == [] and state.decision is None


class FakeScorer:
    """Style similarity comes from the image's red channel (the test scripts it through the image source)."""

    def images(self, images):
        import numpy as np

        out = []
        for im in images:
            r = im.getpixel((0, 0))[0] / 255.0
            out.append([r, (1 - r * r) ** 0.5, 0.0])
        return np.array(out, dtype="float32")

    def texts(self, texts):
        import numpy as np

        return np.array([[1.0, 0.0, 0.0]] * len(texts), dtype="float32")


def _train_images(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        Image.new("RGB", (16, 16), (255, 0, 0)).save(folder / f"t{i}.png")
    return folder


def _lora_files(tmp_path: Path, steps) -> list[Ck]:
    import numpy as np

    from zlt.lora.safetensors_io import RawTensor, write_file

    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    cks = []
    for s in steps:
        p = out / f"wc_{s:09d}.safetensors"
        mod = "diffusion_model.layers.0.attention.to_q"
        write_file(p, {f"{mod}.lora_A.weight": RawTensor.from_float32(np.full((2, 8), s / 1e4, np.float32), "F32"),
                       f"{mod}.lora_B.weight": RawTensor.from_float32(np.full((8, 2), 0.01, np.float32), "F32")})
        cks.append(Ck(p, s))
    return cks


def test_the_thread_scores_keeps_only_the_best_link_and_asks_for_the_stop(tmp_path):
    from PIL import Image

    from zlt.core.events import Evaluation
    from zlt.eval.live_rows import ROWS_FILE, preserved
    from zlt.flows.live_eval import LiveEvaluator

    red = {None: 255, 250: 200, 500: 230, 750: 229, 1000: 228}  # cos to the training images ~ red/255
    def source(lora, prompts, count, seed):
        step = int(lora.stem.rsplit("_", 1)[1]) if lora is not None else None
        value = red[step] if not scale_zero.get(step) else red[None]
        scale_zero[step] = False
        return [Image.new("RGB", (16, 16), (value, 0, 0)) for _ in range(len(prompts) * count)]

    scale_zero = {250: True}  # the base row is drawn with the first checkpoint's file at scale 0
    stops: list[str] = []
    done = threading.Event()
    ev = LiveEvaluator(_spec(tmp_path, every=250, early_stop={"enable": True, "patience": 1, "min_delta": 0.05}),
                       job_id="j", job_dir=tmp_path / "job", train_dir=_train_images(tmp_path / "ds"), gpu=None,
                       request_stop=lambda r: (stops.append(r), done.set()), scorer=FakeScorer(),
                       image_source=source)
    ev.start()
    cks = _lora_files(tmp_path, [250, 500, 750, 1000])
    for i in range(len(cks)):
        ev.offer(cks[: i + 1])
    assert done.wait(60), ev.failed
    state = ev.close()
    assert stops == ["early_stop"] and state.failed is None
    assert [r["step"] for r in state.rows] == [0, 250, 500, 750]  # stopped after 750: 1000 was never scored
    assert state.decision.stop and state.decision.step == 750
    assert state.best_step == 500
    kept = preserved(state.rows)
    assert [s for s, _ in kept] == [500] and os.path.samefile(kept[0][1], cks[1].path)
    assert not (tmp_path / "job" / "eval_live" / "checkpoints" / "wc_000000250.safetensors").exists()
    doc = json.loads((tmp_path / "job" / "eval_live" / ROWS_FILE).read_text())
    assert [r["step"] for r in doc["rows"]] == [0, 250, 500, 750] and doc["early_stop"]["stop"] is True
    events = ev.drain()
    assert all(isinstance(e, Evaluation) for e in events)
    assert [(e.step, e.base, e.decision) for e in events] == [
        (0, True, None), (250, False, "continue"), (500, False, "continue"), (750, False, "stop")]
    # the saved images exist and the reuse match recognises the scored files
    prior = state.prior()
    assert prior.train_emb is not None and len(prior.train_emb) == 2  # the evaluation after training embeds nothing again
    assert prior.row_for(prior.fingerprint, 500, str(cks[1].path))["step"] == 500
    assert prior.row_for(prior.fingerprint, 500, str(cks[2].path)) is None  # another file
    assert prior.row_for("other", 500, str(cks[1].path)) is None  # another measurement
    assert all(Path(p).is_file() for r in state.rows for p in r["images"])


def test_a_failing_evaluation_warns_once_and_never_stops_training(tmp_path):
    from zlt.flows.live_eval import LiveEvaluator

    def broken(lora, prompts, count, seed):
        raise RuntimeError("CUDA error: out of memory")

    stops: list[str] = []
    ev = LiveEvaluator(_spec(tmp_path, early_stop=True), job_id="j", job_dir=tmp_path / "job",
                       train_dir=_train_images(tmp_path / "ds"), gpu=None, request_stop=stops.append,
                       scorer=FakeScorer(), image_source=broken)
    ev.start()
    ev.offer(_lora_files(tmp_path, [250, 500]))
    ev._thread.join(60)
    state = ev.close()
    assert stops == [] and "out of memory" in state.failed
    warnings = ev.drain()
    assert len(warnings) == 1 and warnings[0].code == "eval_failed" and "training goes on" in warnings[0].message


# -- preflight, verdict, collector ----------------------------------------------------------------------

def test_preflight_refuses_a_second_pipeline_that_does_not_fit_and_says_what_to_change():
    from zlt.eval.preflight import live_eval_checks
    from zlt.profiles import get_profile
    from zlt.spec.load import load_spec_data

    spec = load_spec_data({"eval": {"early_stop": True}}).spec
    fail = [c for c in live_eval_checks(spec, get_profile("24gb"), 20.0, 24.0) if c.status == "fail"]
    assert len(fail) == 1 and "second pipeline" in fail[0].message
    assert "eval.every: null" in fail[0].fix and "eval.enable: true" in fail[0].fix
    ok = live_eval_checks(spec, get_profile("80gb"), 30.0, 80.0)
    assert [c.status for c in ok] == ["pass"] and "fits" in ok[0].message
    assert live_eval_checks(load_spec_data({}).spec, get_profile("80gb"), 30.0, 80.0) == []


def test_preflight_warns_when_keep_cannot_hold_what_the_rule_compares():
    from zlt.eval.preflight import live_eval_checks
    from zlt.profiles import get_profile
    from zlt.spec.load import load_spec_data

    spec = load_spec_data({"eval": {"early_stop": {"enable": True, "patience": 3}, "every": 300},
                           "output": {"save": {"keep": 2}}}).spec
    warns = [c for c in live_eval_checks(spec, get_profile("80gb"), 30.0, 80.0) if c.status == "warn"]
    assert any("output.save.keep=4" in c.fix for c in warns)
    assert any("not a multiple" in c.message and "eval.every=250" in c.fix for c in warns)


def test_an_early_stop_is_a_success_whatever_the_trainer_exit_code():
    from zlt.run.classify import classify
    from zlt.run.interpret import RunFacts

    for rc in (0, 1, -2):
        out = classify(returncode=rc, stop_reason="early_stop", signals_sent=["SIGINT"], facts=RunFacts(),
                       expect_final=True, have_final=False)
        assert (out.status, out.cause) == ("succeeded", None)
    facts = RunFacts()
    facts.diverged_at = 40
    assert classify(returncode=0, stop_reason="early_stop", signals_sent=[], facts=facts).cause == "diverged"


def test_the_collector_keeps_the_checkpoint_scored_best_beyond_keep(tmp_path, zlt_home):
    from tests.fixtures.artifact_jobs import make_job_dir
    from zlt.artifacts import collect_artifact

    jd = make_job_dir(tmp_path, spec={"output": {"save": {"keep": 1}}},
                      result={"eval_during_training": {"best_step": 250, "every": 250}})
    rec = collect_artifact(jd, home=zlt_home)
    meta = json.loads((rec.path / "training_meta.json").read_text())
    assert [c["step"] for c in meta["checkpoints"]] == [250, 750]
    assert any("step 250 kept beyond output.save.keep=1" in w for w in meta["warnings"])


def test_each_evaluation_while_training_is_a_line_of_the_job_history():
    from zlt.jobs.progress import StoreSink

    class Store:
        def __init__(self):
            self.notes = []

        def note(self, job_id, message):
            self.notes.append((job_id, message))

    store = Store()
    sink = StoreSink(store, "job-1", "token")  # type: ignore[arg-type]
    sink({"type": "evaluation", "step": 0, "base": True, "style_similarity": 0.5, "prompt_alignment": 0.3})
    sink({"type": "evaluation", "step": 500, "base": False, "style_similarity": 0.81234, "prompt_alignment": 0.27,
          "memorisation": 0.9, "decision": "stop", "reason": "style similarity plateaued"})
    assert store.notes == [
        ("job-1", "eval base model: style 0.5000, alignment 0.3000, memorisation -, diversity -"),
        ("job-1", "eval step 500: style 0.8123, alignment 0.2700, memorisation 0.9000, diversity -; early stop: "
                  "style similarity plateaued"),
    ]


def test_eval_every_save_means_each_checkpoint_and_bad_values_name_the_choices():
    from zlt.core.errors import SpecError
    from zlt.spec.load import load_spec_data

    spec = load_spec_data({"eval": {"every": "save"}, "output": {"save": {"every": 50}}}).spec
    assert spec.eval.during_training_every(spec.output.save.every) == 50
    for bad in (0, "often", True):
        with pytest.raises(SpecError) as e:
            load_spec_data({"eval": {"every": bad}})
        lines = e.value.lines()
        assert len(lines) == 2 and lines[1].strip().startswith("eval.every:") and "'save'" in lines[1], lines


def test_a_metric_model_folder_beside_the_spec_is_resolved_and_a_hub_id_is_left_alone(tmp_path):
    from zlt.spec import load_spec

    (tmp_path / "tiny-clip").mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text("eval: {models: {clip: tiny-clip}}\n")
    assert load_spec(spec).spec.eval.models.clip == str((tmp_path / "tiny-clip").resolve())
    spec.write_text("eval: {models: {clip: openai/clip-vit-large-patch14}}\n")
    assert load_spec(spec).spec.eval.models.clip == "openai/clip-vit-large-patch14"


def test_a_worker_job_stopped_early_succeeds_and_its_history_has_the_evaluations(tmp_path):
    from PIL import Image

    from tests.unit.test_jobs_runjob import FakeOutcome, FakeTrainer, run_once, submit
    from zlt.core.events import Evaluation, EventStream
    from zlt.jobs.store import JobStore

    (tmp_path / "ds").mkdir()
    Image.new("RGB", (16, 16), "red").save(tmp_path / "ds" / "a.png")
    home = tmp_path / "home"

    class StoppedEarly(FakeTrainer):
        def __call__(self, req, *, sinks=(), stop=None):
            stream = EventStream(req.job_id)
            for s in sinks:
                stream.add_sink(s)
            stream.emit(Evaluation(step=0, base=True, style_similarity=0.5, prompt_alignment=0.3, memorisation=0.4))
            stream.emit(Evaluation(step=4, style_similarity=0.6, prompt_alignment=0.28, memorisation=0.5,
                                   decision="stop", reason="style similarity plateaued and prompt alignment is falling"))
            out = super().__call__(req, sinks=sinks, stop=stop)
            return FakeOutcome(**{**out.to_dict(), "last_step": 6, "stopped_early": "plateau"})

    jid = submit(home, tmp_path)
    store = JobStore(home)
    try:
        assert run_once(store, StoppedEarly()) == "succeeded"
        messages = [h["message"] for h in store.history(jid)]
    finally:
        store.close()
    assert "eval base model: style 0.5000, alignment 0.3000, memorisation 0.4000, diversity -" in messages
    assert any(m.startswith("eval step 4: style 0.6000") and "early stop: style similarity plateaued" in m
               for m in messages)
    assert messages[-1] == "succeeded: artifact a1; stopped early at step 6 (eval.early_stop)"


def test_a_resumed_job_keeps_the_rows_of_its_earlier_attempt_and_scores_only_new_checkpoints(tmp_path):
    from PIL import Image

    from zlt.flows.live_eval import LiveEvaluator

    drawn: list[str] = []

    def source(lora, prompts, count, seed):
        drawn.append(lora.name)
        return [Image.new("RGB", (16, 16), (200, 0, 0)) for _ in range(len(prompts) * count)]

    def evaluator(resume: bool) -> LiveEvaluator:
        return LiveEvaluator(_spec(tmp_path, every=250), job_id="j", job_dir=tmp_path / "job",
                             train_dir=_train_images(tmp_path / "ds"), gpu=None, request_stop=lambda r: None,
                             resume=resume, scorer=FakeScorer(), image_source=source)

    cks = _lora_files(tmp_path, [250, 500, 750])
    first = evaluator(False)
    first.start()
    first.offer(cks[:2])
    deadline = time.monotonic() + 60
    while len([r for r in first.rows if not r.get("base")]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.close()
    drawn.clear()
    again = evaluator(True)
    again.start()
    again.offer(cks)
    assert [s for s, _l, _o in again._pending] == [750]
    deadline = time.monotonic() + 60
    while len(again.rows) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    state = again.close()
    assert [r["step"] for r in state.rows] == [0, 250, 500, 750]
    assert drawn == [".lora_step_000750.safetensors"]  # nothing scored twice, the base row kept too
    assert evaluator(False).rows == []  # a fresh run starts from nothing


def test_the_early_stop_shorthand_keeps_its_source_for_explain():
    from zlt.spec.load import load_spec_data

    loaded = load_spec_data({"eval": {"early_stop": True}})
    assert loaded.provenance["eval.early_stop.enable"] == "spec"
    loaded = load_spec_data({}, sets=["eval.early_stop=true"])
    assert loaded.spec.eval.early_stop.enable and loaded.provenance["eval.early_stop.enable"] == "--set"
