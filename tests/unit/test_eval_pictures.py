"""The contact sheet's grid and captions, and the prompt helpers."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from zlt.eval.pictures import HEADER_H, LABEL_W, contact_sheet, row_caption, thumb_size
from zlt.eval.prompts import DEFAULT_PROMPTS, build_prompts, read_prompts_file, with_trigger


def test_contact_sheet_has_one_row_per_checkpoint_and_one_column_per_prompt_and_seed(tmp_path: Path):
    rows = [{"step": 0, "base": True, "metrics": {}}, {"step": 250, "metrics": {"style_similarity": 0.8}},
            {"step": 500, "final": True, "metrics": {}}]
    images = [[Image.new("RGB", (160, 160), c) for c in ("red", "green", "blue", "white")] for _ in rows]
    geo = contact_sheet(rows, images, ["p1 s1", "p1 s2", "p2 s3", "p2 s4"], tmp_path / "s.png", best_step=250)
    assert (geo.rows, geo.cols, geo.thumb) == (3, 4, 160)
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (LABEL_W + 4 * 160, HEADER_H + 3 * 160)
        assert im.getpixel((LABEL_W + 2 * 160 + 5, HEADER_H + 160 + 5)) == (0, 0, 255)  # row 2, column 3
    assert row_caption(rows[1], 250)[0] == "step 250  * BEST" and row_caption(rows[0], 250)[0] == "base (no LoRA)"
    assert thumb_size(32) == 100 and thumb_size(1024) == 256


def test_trigger_placement_and_plain_prompts():
    assert with_trigger("[trigger] a cat", "<zstyle>").text == "<zstyle> a cat"
    assert with_trigger("a cat in [trigger] style", "<zs>").text == "a cat in <zs> style"
    p = with_trigger("a cat", "<zstyle>")
    assert (p.text, p.plain) == ("<zstyle> a cat", "a cat")
    assert with_trigger("[trigger] a cat", None).text == "a cat"
    assert len(build_prompts(None, "<zstyle>")) == len(DEFAULT_PROMPTS) == 8


def test_prompts_file_formats(tmp_path: Path):
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\n a cat \n\n[trigger] a dog # not a comment\n", encoding="utf-8")
    assert read_prompts_file(txt) == ["a cat", "[trigger] a dog # not a comment"]
    js = tmp_path / "p.json"
    js.write_text('["a", "b"]', encoding="utf-8")
    assert read_prompts_file(js) == ["a", "b"]


def test_a_job_slot_maps_to_the_torch_ordinal_under_cuda_visible_devices(monkeypatch):
    from zlt.infer.pipeline import cuda_ordinal

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_ordinal(None) is None and cuda_ordinal([3]) == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert cuda_ordinal([3]) == 1 and cuda_ordinal([2]) == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # a child given just its GPU
    assert cuda_ordinal([3]) == 0
