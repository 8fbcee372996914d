"""Captions: file-name captions, trigger insertion, encodings, metadata files, strategies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_dataset_factory import photo
from zlt.dataset.captions import (
    MAX_CAPTION_TOKENS,
    apply_trigger,
    estimate_tokens,
    filename_caption,
    plan_captions,
    read_text_file,
    shot_type,
    tidy,
)
from zlt.dataset.scan import scan_dataset
from zlt.spec.models import CaptionSpec


@pytest.mark.parametrize(("name", "caption"), [
    ("red_fox-in_snow_001.png", "red fox in snow"),
    ("cat (2).jpg", "cat"),
    ("sub/blue_whale_12_3.webp", "blue whale"),
    ("0001.png", ""),
    ("IMG_1234.jpg", "IMG"),
    ("style2 sample.jpg", "style2 sample"),
    ("no_ext", "no ext"),
])
def test_filename_caption(name: str, caption: str) -> None:
    assert filename_caption(name) == caption


@pytest.mark.parametrize(("caption", "token", "position", "final", "how"), [
    ("a cat", "<zstyle>", "prefix", "<zstyle>, a cat", "inserted"),
    ("a cat", "<zstyle>", "suffix", "a cat, <zstyle>", "inserted"),
    ("", "<zstyle>", "prefix", "<zstyle>", "inserted"),
    ("<zstyle>, a cat", "<zstyle>", "prefix", "<zstyle>, a cat", "present"),
    ("a photo of [trigger] with a hat", "anna", "prefix", "a photo of anna with a hat", "placeholder"),
    ("[trigger] cat, by [trigger]", "ohwx", "prefix", "ohwx cat, by", "placeholder"),
    ("a cat, [trigger]", None, "prefix", "a cat", "none"),
    ("a cat", None, "prefix", "a cat", "none"),
    ("ohwxs on a hill", "ohwx", "prefix", "ohwx, ohwxs on a hill", "inserted"),  # a longer word is not the token
])
def test_apply_trigger_inserts_once(caption, token, position, final, how) -> None:
    assert apply_trigger(caption, token, position) == (final, how)


def test_tidy_and_tokens() -> None:
    assert tidy("  a\n cat ,, on  a mat , ") == "a cat, on a mat"
    assert estimate_tokens("a red fox") == 3
    assert estimate_tokens("特写照片") == 4
    assert estimate_tokens("watercolour 2024") == 2 + 4  # a long word is more than one token; digits are one each
    assert estimate_tokens("word " * (MAX_CAPTION_TOKENS + 1)) > MAX_CAPTION_TOKENS


def test_shot_type() -> None:
    assert shot_type("Close-up of anna") == "close_up"
    assert shot_type("anna, upper body, smiling") == "medium"
    assert shot_type("全身照") == "full_body"
    assert shot_type("anna in a park") is None


def test_read_text_file_encodings(tmp_path: Path) -> None:
    p = tmp_path / "c.txt"
    p.write_bytes("\ufeffcafé".encode())
    assert read_text_file(p) == ("café", None)
    p.write_bytes("café".encode("utf-16"))
    assert read_text_file(p) == ("café", "UTF-16 text; prepare writes it as UTF-8")
    p.write_bytes("café".encode("cp1252"))
    text, note = read_text_file(p)
    assert text == "caf\ufffd" and note is not None and "byte 0xe9 at offset 3" in note


def _folder(tmp_path: Path, files: dict[str, str | bytes | None]) -> Path:
    root = tmp_path / "ds"
    for i, (name, content) in enumerate(files.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            photo(path, (32, 32), seed=i)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def _plan(root: Path, **spec):
    scan = scan_dataset(root)
    return plan_captions(scan, [f.rel for f in scan.images], CaptionSpec(**spec))


def test_txt_strategy_missing_empty_default(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a.png": None, "a.txt": "an apple", "b.png": None, "c.png": None, "c.txt": "  \n"})
    plan = _plan(root, strategy="txt", trigger_token=None)
    assert plan.by_image["a.png"].final == "an apple"
    assert plan.by_image["b.png"].source == "none" and plan.by_image["b.png"].final == ""
    assert [(f.code, f.file) for f in plan.findings] == [("caption_missing", "b.png"), ("caption_empty", "c.txt")]
    plan = _plan(root, strategy="txt", trigger_token="<s>", default_caption="a fruit")
    assert plan.by_image["b.png"].source == "default" and plan.by_image["b.png"].final == "<s>, a fruit"
    assert plan.by_image["c.png"].final == "<s>, a fruit"
    assert "the default caption 'a fruit' is used" in plan.findings[0].message


def test_sidecar_orphans_collisions_and_custom_ext(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a.png": None, "a.jpg": None, "a.caption": "shared", "lost.caption": "x",
                              "sub/b.png": None, "sub/b.caption": "bee"})
    plan = _plan(root, strategy="filename_or_txt", caption_ext="caption")
    assert plan.by_image["sub/b.png"].text == "bee"
    assert {(f.code, f.file) for f in plan.findings} == {("caption_collision", "a.png"), ("caption_orphan", "lost.caption")}
    assert plan.orphans == ["lost.caption"]


def test_filename_strategy_ignores_sidecars(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"red_car.png": None, "red_car.txt": "ignored"})
    plan = _plan(root, strategy="filename")
    assert plan.by_image["red_car.png"].final == "<zstyle>, red car"
    assert [f.code for f in plan.findings] == ["caption_source_ignored"]


def test_metadata_csv(tmp_path: Path) -> None:
    csv_text = ("File_Name,Prompt\n"
                "a.png,an apple on a table\n"
                "sub/b.png,\"a bee, [trigger] style\"\n"
                "a.png,again\n"
                "ghost.png,nobody\n"
                "c.png\n"
                "\n")
    root = _folder(tmp_path, {"a.png": None, "sub/b.png": None, "c.png": None, "metadata.csv": csv_text})
    plan = _plan(root, strategy="metadata")
    assert plan.by_image["a.png"].final == "<zstyle>, an apple on a table"
    assert plan.by_image["sub/b.png"].final == "a bee, <zstyle> style"
    assert plan.by_image["c.png"].source == "none"
    assert [(f.code, f.message) for f in plan.findings] == [
        ("metadata_row_invalid", "line 6: too few columns"),
        ("metadata_duplicate", "line 4 names a.png again; ignored"),
        ("caption_orphan", "line 5 names 'ghost.png', which is not an image in the folder"),
        ("caption_missing", "no caption"),
    ]


def test_metadata_jsonl_matches_by_base_name(tmp_path: Path) -> None:
    jsonl = '{"file_name": "b.png", "text": "a bee"}\nnot json\n{"image": "a.png"}\n'
    root = _folder(tmp_path, {"sub/b.png": None, "a.png": None, "metadata.jsonl": jsonl})
    plan = _plan(root, strategy="metadata", trigger_token=None)
    assert plan.by_image["sub/b.png"].final == "a bee"
    assert [(f.code, f.message) for f in plan.findings][:2] == [
        ("metadata_row_invalid", "line 2: invalid JSON (Expecting value)"),
        ("metadata_row_invalid", "line 3: needs a 'filename' and a 'prompt' string"),
    ]


def test_metadata_bad_header_is_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a.png": None, "metadata.csv": "a.png,an apple\n"})
    plan = _plan(root, strategy="metadata")
    errors = [f for f in plan.findings if f.severity == "error"]
    assert [f.code for f in errors] == ["metadata_invalid"]
    assert "filename,prompt" in errors[0].hint


def test_metadata_present_but_not_used_is_mentioned(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a.png": None, "metadata.csv": "filename,prompt\na.png,x\n"})
    plan = _plan(root)
    assert [(f.code, f.file) for f in plan.findings] == [("caption_source_ignored", "metadata.csv")]


def test_long_repeated_and_unused_placeholder(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"a.png": None, "a.txt": "word " * 600, "b.png": None, "b.txt": "<zstyle> and <zstyle>",
                              "c.png": None, "c.txt": "x [trigger]"})
    plan = _plan(root, strategy="txt")
    assert {(f.code, f.file) for f in plan.findings} == {("caption_long", "a.txt"), ("trigger_repeated", "b.txt")}
    plan = _plan(root, strategy="txt", trigger_token=None)
    assert ("trigger_placeholder_unused", "c.txt") in {(f.code, f.file) for f in plan.findings}
    assert plan.by_image["c.png"].final == "x"
