"""Issue 26: captions for a style / character LoRA, sidecars, records, resume, bad input (a stand-in captioner:
no model is loaded here; tests/integration/test_caption_cli.py runs the tiny one)."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.caption_fixtures import FakeLoaded, bare_images
from zlt.caption import CaptionOptions, caption_folder, plan_folder
from zlt.caption.models import captioner_info
from zlt.caption.records import read_records
from zlt.caption.text import STYLE_WORDS, finish, prompt_for, strip_style
from zlt.core.errors import BadInputError
from zlt.dataset.captions import MAX_CAPTION_TOKENS, estimate_tokens

TINY = "zlt/tiny-captioner"


@pytest.mark.parametrize("raw, want", [
    ("The image is a painting of a red house by a lake, in the style of Monet.", "a red house by a lake"),
    ("A digital illustration of a girl holding a cat, drawn in watercolor.", "a girl holding a cat"),
    ("The image shows a cat sitting on a table next to a window.", "a cat sitting on a table next to a window"),
    ("an anime style drawing of a boy on a bridge", "a boy on a bridge"),
])
def test_style_captions_keep_the_content_and_drop_style_words(raw, want):
    assert strip_style(raw) == want
    assert not any(w in strip_style(raw).lower().split() for w in STYLE_WORDS)


def test_each_family_gets_its_prompt_and_the_character_form():
    florence, qwen = captioner_info(TINY), captioner_info("Qwen/Qwen2.5-VL-7B-Instruct")
    assert prompt_for(florence, "style") == "<DETAILED_CAPTION>" and prompt_for(florence, "character") == "<CAPTION>"
    assert "Do not mention the art style" in prompt_for(qwen, "style")
    done = finish("The image shows A woman in a red dress", preset="character")
    assert done.caption == "a photo of [trigger], a woman in a red dress"
    cut = finish("one two three four five", prefix="pre:", suffix='"end"', max_words=3)
    assert cut.caption == 'pre: one two three "end"' and cut.notes == ["cut to 3 words (max_words)"]


def test_a_caption_can_never_add_a_line_and_a_long_one_is_truncated_with_a_warning(tmp_path):
    folder = bare_images(tmp_path / "ds", n=2)
    fake = FakeLoaded(text='a cat: "hi"\n[dataset]\nkey = 1 ' + "word " * 800)
    rep = caption_folder(folder, CaptionOptions(model=TINY), loaded=fake)
    text = (folder / "img00.txt").read_text()
    assert text.count("\n") == 1 and text.startswith('a cat: "hi" [dataset] key = 1 word')
    assert estimate_tokens(text) <= MAX_CAPTION_TOKENS - 12
    assert rep.truncated == ["img00.png", "img01.png"] and "truncated" in rep.warnings[0]
    rec = read_records(folder)[0]
    assert rec["raw"] == fake.text and rec["caption"] == text.strip() and rec["truncated"] is True


def test_unreadable_images_are_skipped_and_reported(tmp_path):
    folder = bare_images(tmp_path / "ds", n=3)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "empty.jpg").write_bytes(b"")
    seen: list[tuple[int, int]] = []
    rep = caption_folder(folder, CaptionOptions(model=TINY), loaded=FakeLoaded(),
                         progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)  # the skipped ones count as done: progress ends at the total
    assert rep.captioned == 3 and {u["file"]: u["reason"] for u in rep.unreadable} == {
        "broken.png": "corrupt", "empty.jpg": "zero_byte"}
    assert not (folder / "broken.txt").exists() and "2 image(s) skipped" in rep.warnings[-1]


def test_missing_mode_resumes_and_all_mode_keeps_the_old_text(tmp_path):
    folder = bare_images(tmp_path / "ds", n=4)
    (folder / "img00.txt").write_text("my own caption\n")
    fake = FakeLoaded()
    rep = caption_folder(folder, CaptionOptions(model=TINY), loaded=fake)
    assert (rep.captioned, rep.have_caption, fake.calls) == (3, 1, [3])
    assert (folder / "img01.txt").read_text() == "a red house by a lake\n"
    assert (folder / "img00.txt").read_text() == "my own caption\n"
    with pytest.raises(BadInputError, match="would replace 4 existing") as err:
        plan_folder(folder, CaptionOptions(model=TINY, mode="all"))
    assert err.value.exit_code == 2 and "--overwrite" in err.value.hint
    again = caption_folder(folder, CaptionOptions(model=TINY, mode="all", overwrite=True), loaded=fake)
    # three images are unchanged (same content, model and prompt: the earlier output, no model call), one is new
    assert (again.captioned, again.reused, again.unchanged, fake.calls) == (1, 0, 3, [3, 1])
    assert (folder / "img00.txt.bak").read_text() == "my own caption\n"
    assert (folder / "img00.txt").read_text() == "a red house by a lake\n"
    (folder / "img02.txt").unlink()
    third = caption_folder(folder, CaptionOptions(model=TINY), loaded=fake)
    assert (third.captioned, third.reused, fake.calls) == (0, 1, [3, 1])  # resumed from its record
    recs = read_records(folder)
    assert len(recs) == 5 and recs[-1]["reused"] is True and recs[-1]["file"] == "img02.png"
    assert set(recs[0]) >= {"model", "revision", "prompt", "time", "raw", "caption", "sha256"}


def test_unknown_captioner_and_empty_folder_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="caption.model"):
        plan_folder(bare_images(tmp_path / "a", n=1), CaptionOptions(model="nobody/nothing"))
    (tmp_path / "b").mkdir()
    with pytest.raises(BadInputError, match="caption.path: .*empty"):
        plan_folder(tmp_path / "b", CaptionOptions(model=TINY))
    json.dumps(captioner_info(TINY).to_dict())


def test_render_explain_says_which_captions_are_generated_and_by_what(tmp_path):
    from zlt.caption.explain import caption_notes
    from zlt.spec import load_spec_data

    folder = bare_images(tmp_path / "ds", n=3)
    spec = load_spec_data({"dataset": {"path": str(folder), "caption": {"auto": {"enable": True, "model": TINY}}}}).spec
    assert caption_notes(spec) == [f"will caption 3 of 3 image(s) with {TINY} before prepare (mode missing); "
                                   f"records in {folder / 'captions.jsonl'}"]
    caption_folder(folder, CaptionOptions(model=TINY, max_words=3), loaded=FakeLoaded())
    (folder / "img02.txt").write_text("edited by hand\n")
    notes = caption_notes(spec)
    assert notes[0].startswith("will caption 0 of 3") and notes[1] == (
        f"2 caption(s) in the folder were generated by {TINY}@fake-1 (<DETAILED_CAPTION>)")


def test_captioning_progress_counts_images_not_the_trainers_steps():
    """A training job's `captioning` phase keeps the job preparing, and its image counts are not the trainer's
    first step (a resumed job must not warn 'trainer did not resume')."""
    from zlt.jobs.progress import StoreSink

    class Store:
        def __init__(self):
            self.writes, self.transitions, self.notes = [], [], []

        def update_progress(self, job_id, token, **kw):
            self.writes.append(kw)
            return True

        def transition(self, *a, **kw):
            self.transitions.append(kw.get("message"))

        def note(self, job_id, message):
            self.notes.append(message)

    store = Store()
    sink = StoreSink(store, "job-1", "token", expected_resume_step=500, min_interval_s=0)  # type: ignore[arg-type]
    sink({"type": "phase", "phase": "captioning"})
    sink({"type": "progress", "step": 3, "total": 12})
    assert store.transitions == [] and store.notes == []
    assert store.writes[0]["phase"] == "captioning" and store.writes[-1]["progress"]["step"] == 3
    sink({"type": "phase", "phase": "loading_model"})
    sink({"type": "progress", "step": 501, "total": 1000})
    assert store.transitions == ["trainer started (loading_model)"] and store.notes == []


def test_the_spec_gate_fences_the_captioner_like_any_model(tmp_path):
    from zlt.core.errors import SpecError
    from zlt.flows.fences import Roots
    from zlt.flows.gate import admit

    root = tmp_path / "data"
    bare_images(root / "set", n=1)
    roots = Roots(data=(root,), output=None, models=())
    spec = {"dataset": {"path": "set", "caption": {"auto": {"enable": True, "model": str(tmp_path)}}}}
    with pytest.raises(SpecError) as err:
        admit(spec, roots=roots, mode="submit")
    assert [e.path for e in err.value.errors] == ["dataset.caption.auto.model"]
    spec["dataset"]["caption"]["auto"]["model"] = TINY
    assert admit(spec, roots=roots, mode="submit").spec.dataset.caption.auto.model == TINY


def test_the_console_counts_images_while_captioning_then_steps():
    import io

    from rich.console import Console

    from zlt.run.display import RichSink

    out = io.StringIO()
    sink = RichSink(Console(file=out, force_terminal=False, width=200))
    sink({"type": "phase", "phase": "captioning", "message": "ds with zlt/tiny-captioner"})
    sink({"type": "progress", "step": 1, "total": 4, "elapsed_s": 1.0})
    sink({"type": "phase", "phase": "preparing_dataset"})
    sink({"type": "progress", "step": 1, "total": 8, "elapsed_s": 1.0, "loss": 0.5})
    sink.close()
    import re

    lines = out.getvalue().splitlines()
    assert re.match(r"captioning ━+ +1/4 ", lines[1]) and lines[2] == "preparing_dataset", lines
    assert re.match(r"training ━+ +1/8 loss 0.5", lines[3]), lines
