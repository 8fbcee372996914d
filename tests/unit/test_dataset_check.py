"""`check_dataset`: every finding on a folder holding one of each problem, totals, spec-driven rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.unit.test_dataset_factory import clean_dataset, mixed_dataset, photo
from zlt.core.errors import BadInputError
from zlt.dataset import CODES, check_dataset
from zlt.dataset.report import render_text
from zlt.spec import load_spec_data

EXPECTED_MIXED = {
    ("error", "decompression_bomb", "bomb.png"),
    ("error", "truncated", "broken.jpg"),
    ("error", "corrupt", "crc.png"),
    ("error", "zero_byte", "empty.png"),
    ("warning", "unsupported_format", "anim.gif"),
    ("warning", "symlink_outside", "link.jpg"),
    ("warning", "below_resolution", "cat.png"),
    ("warning", "below_resolution", "cmyk.jpg"),
    ("warning", "needs_conversion", "cmyk.jpg"),
    ("warning", "below_resolution", "gray16.png"),
    ("warning", "needs_conversion", "gray16.png"),
    ("warning", "below_resolution", "sub/alpha.png"),
    ("warning", "alpha_channel", "sub/alpha.png"),
    ("warning", "below_resolution", "sub/cat_copy.png"),
    ("warning", "below_resolution", "sub/fox_small.jpg"),
    ("warning", "below_resolution", "sub/rot.jpg"),
    ("warning", "caption_orphan", "orphan.txt"),
    ("warning", "caption_generic", "IMG_1234.jpg"),
    ("warning", "caption_encoding", "dog.txt"),
    ("warning", "duplicate_exact", "sub/cat_copy.png"),
    ("warning", "duplicate_near", "sub/fox_small.jpg"),
    ("warning", "count_low", None),
    ("info", "non_image_files", None),
    ("info", "hidden_skipped", None),
    ("info", "exif_rotated", "sub/rot.jpg"),
    ("info", "trigger_missing", None),
}


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory: pytest.TempPathFactory):
    root = mixed_dataset(tmp_path_factory.mktemp("mixed") / "ds")
    return check_dataset(root)


def test_every_finding_of_the_mixed_folder(mixed_report) -> None:
    got = {(f.severity, f.code, f.file) for f in mixed_report.findings}
    assert got == EXPECTED_MIXED
    assert len(mixed_report.findings) == len(EXPECTED_MIXED)
    # the four broken images are errors prepare skips: not blocking unless dataset.strict
    assert not mixed_report.has_errors
    assert sorted(mixed_report.skipped_files()) == ["bomb.png", "broken.jpg", "crc.png", "empty.png"]
    for f in mixed_report.findings:  # severity always follows the code table, and errors say what to do
        assert CODES[f.code][0] == f.severity
        assert f.message
        if f.severity == "error":
            assert f.hint


def test_finding_messages_name_the_problem(mixed_report) -> None:
    msg = {(f.code, f.file): f.message for f in mixed_report.findings}
    assert "10000000000 pixels" in msg[("decompression_bomb", "bomb.png")]
    assert "truncated" in msg[("truncated", "broken.jpg")]
    assert "IDAT" in msg[("corrupt", "crc.png")]
    assert msg[("below_resolution", "cat.png")] == "800x600: longest side 800 < 1024"
    assert msg[("below_resolution", "sub/rot.jpg")] == "400x600: longest side 600 < 1024"  # after EXIF rotation
    assert msg[("needs_conversion", "cmyk.jpg")].startswith("CMYK")
    assert "clips it to white" in msg[("needs_conversion", "gray16.png")]
    assert "byte 0xe0 at offset 9" in msg[("caption_encoding", "dog.txt")]
    assert msg[("caption_generic", "IMG_1234.jpg")] == "the file name gives the caption 'IMG'"
    assert msg[("duplicate_exact", "sub/cat_copy.png")] == "identical to cat.png; prepare drops it"
    assert msg[("duplicate_near", "sub/fox_small.jpg")].startswith("looks like red_fox_in-snow_001.jpg (pHash distance")
    assert msg[("count_low", None)] == "8 unique usable image(s); the style preset advises 15-200"
    assert msg[("trigger_missing", None)] == "9 of 10 caption(s) lack <zstyle>; prepare inserts it once as a prefix"
    assert msg[("non_image_files", None)] == "1 file(s) ignored: notes.md"
    assert msg[("symlink_outside", "link.jpg")].startswith("symlink points outside the dataset folder")


def test_totals_of_the_mixed_folder(mixed_report) -> None:
    t = mixed_report.totals
    assert (t["images_found"], t["images_usable"], t["images_unusable"], t["images_unique"]) == (14, 10, 4, 8)
    assert t["unsupported_files"] == 1
    assert t["formats"] == {"JPEG": 5, "PNG": 4, "WEBP": 1}
    assert t["shortest_side"] == {"min": 192, "max": 900}
    assert t["longest_side"] == {"min": 256, "max": 1300}
    assert (t["below_resolution"], t["exif_rotated"], t["alpha"], t["needs_conversion"]) == (7, 1, 1, 2)
    c = t["captions"]
    assert c["by_source"] == {"sidecar": 2, "filename": 8, "metadata": 0, "default": 0, "none": 0}
    assert (c["orphans"], c["encoding_issues"], c["missing"], c["empty"], c["long"]) == (1, 1, 0, 0, 0)
    assert (c["trigger_present"], c["trigger_placeholder"], c["trigger_to_insert"]) == (0, 1, 9)
    assert t["duplicates"] == {"exact_files": 1, "near_files": 1}
    assert t["advice"] == {"preset": "style", "min": 15, "max": 200, "count": 8, "status": "low"}
    assert t["samples_per_epoch"] == 8 * 10


def test_per_image_records(mixed_report) -> None:
    rec = {r.file: r for r in mixed_report.images}
    assert set(rec) == {
        "IMG_1234.jpg", "bomb.png", "broken.jpg", "cat.png", "cmyk.jpg", "crc.png", "dog.webp", "empty.png",
        "gray16.png", "red_fox_in-snow_001.jpg", "sub/alpha.png", "sub/cat_copy.png", "sub/fox_small.jpg", "sub/rot.jpg",
    }
    assert rec["bomb.png"].status == "error" and rec["bomb.png"].codes == ["decompression_bomb"]
    assert rec["sub/cat_copy.png"].status == "duplicate" and rec["sub/cat_copy.png"].duplicate_of == "cat.png"
    assert rec["sub/fox_small.jpg"].status == "near_duplicate"
    rot = rec["sub/rot.jpg"]
    assert (rot.width, rot.height, rot.exif_orientation) == (400, 600, 6)
    assert rec["sub/alpha.png"].has_alpha and rec["sub/alpha.png"].alpha_used
    assert rec["cat.png"].caption.final == "a cat sitting, <zstyle> style"
    assert rec["cat.png"].caption.trigger == "placeholder"
    assert rec["red_fox_in-snow_001.jpg"].caption.final == "<zstyle>, red fox in snow"
    assert rec["dog.webp"].caption.source == "sidecar" and "caption_encoding" in rec["dog.webp"].codes
    assert "\ufffd" in rec["dog.webp"].caption.text
    assert len(rec["cat.png"].sha256) == 64 and len(rec["cat.png"].phash or "") == 16


def test_json_report_is_complete_and_serialisable(mixed_report) -> None:
    d = json.loads(json.dumps(mixed_report.to_dict()))
    assert d["ok"] is True and d["strict"] is False  # the broken images are skipped, not blocking
    assert sorted(d["skipped"]) == ["bomb.png", "broken.jpg", "crc.png", "empty.png"]
    assert d["counts"] == {"error": 4, "warning": 18, "info": 4}
    assert d["settings"]["resolution"] == 1024 and d["settings"]["trigger_token"] == "<zstyle>"
    assert {"severity", "code", "message", "file", "hint"} <= set(d["findings"][0])
    assert [f["severity"] for f in d["findings"]] == sorted(
        (f["severity"] for f in d["findings"]), key=["error", "warning", "info"].index)


def test_text_report(mixed_report) -> None:
    lines = render_text(mixed_report, per_image=True)
    text = "\n".join(lines)
    assert "  images: 14 found, 10 usable, 8 unique" in text
    assert "errors (4; prepare skips the unreadable image(s)):" in text
    assert "warnings (18):" in text and "info (4):" in text
    assert "  zero_byte              empty.png: the file is empty (0 bytes)" in lines
    assert lines[-1] == ("result: ready to train on 10 image(s); prepare skips 4 unreadable image(s), dataset.strict: "
                         "true refuses them instead (18 warnings, 4 info)")
    # the hints agree with the verdict: no "block training" beside "prepare skips it"
    assert all(f.hint.endswith("prepare skips it") for f in mixed_report.findings if f.severity == "error")
    assert sum(1 for line in lines if line.endswith("]")) == 14  # one line per image


def spec_of(**dataset) -> object:
    return load_spec_data({"dataset": dataset}).spec


def test_strict_makes_unreadable_images_block(tmp_path: Path) -> None:
    root = clean_dataset(tmp_path / "ds", n=3)
    (root / "bad.png").write_bytes(b"not a png")
    lenient, strict = check_dataset(root), check_dataset(root, spec_of(strict=True))
    assert not lenient.has_errors and lenient.to_dict()["ok"] and lenient.to_dict()["skipped"] == ["bad.png"]
    assert strict.has_errors and not strict.to_dict()["ok"] and strict.to_dict()["strict"] is True
    bad = next(f for f in strict.findings if f.code == "corrupt")
    assert bad.hint.endswith("dataset.strict: true refuses to train until then")
    assert render_text(strict)[-1].startswith("result: 1 error(s) block training (dataset.strict: true refuses the 1 "
                                              "unreadable image(s);")


def test_clean_folder_has_no_errors(tmp_path: Path) -> None:
    root = clean_dataset(tmp_path / "ds", n=15, size=(1024, 768))
    report = check_dataset(root)
    assert not report.has_errors
    assert {(f.severity, f.code) for f in report.findings} == {("info", "count_ok"), ("info", "trigger_missing")}
    assert render_text(report)[-1] == "result: ready to train (0 warnings, 2 info)"


def test_upscale_changes_the_hint(tmp_path: Path) -> None:
    root = clean_dataset(tmp_path / "ds", n=1, size=(300, 200))
    hint = next(f.hint for f in check_dataset(root, spec_of(upscale=True)).findings if f.code == "below_resolution")
    assert hint == "prepare upscales it (dataset.upscale: true)"
    small = spec_of(resolution=256)
    assert not [f for f in check_dataset(root, small).findings if f.code == "below_resolution"]


def test_character_preset_counts_and_shot_mix(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i in range(10):
        photo(root / f"p{i}.jpg", (512, 512), seed=200 + i)
        framing = "close-up" if i < 2 else "full body" if i < 9 else "medium shot"
        (root / f"p{i}.txt").write_text(f"a photo of anna, {framing}", encoding="utf-8")
    spec = load_spec_data({"preset": "character"}).spec
    report = check_dataset(root, spec)
    codes = {f.code: f for f in report.findings}
    assert codes["count_low"].message == "10 unique usable image(s); the character preset advises 70-80"
    assert codes["shot_mix"].message.startswith("shot mix 20% close-up, 10% medium, 70% full-body;")
    assert "40-50% close-up / 30-40% medium / 10-20% full-body" in codes["shot_mix"].message
    assert report.totals["shot_mix"]["full_body"] == 7
    assert "trigger_missing" not in codes  # the character preset has no trigger
    for i in range(10):
        (root / f"p{i}.txt").write_text("a photo of anna", encoding="utf-8")
    codes = {f.code: f for f in check_dataset(root, spec).findings}
    assert "shot_mix" not in codes and codes["shot_mix_unknown"].message.startswith("shot mix unknown")


def test_metadata_strategy_without_metadata_blocks(tmp_path: Path) -> None:
    root = clean_dataset(tmp_path / "ds", n=2)
    report = check_dataset(root, spec_of(caption={"strategy": "metadata"}))
    assert report.has_errors
    codes = [f.code for f in report.findings]
    assert "metadata_missing" in codes and codes.count("caption_missing") == 2
    assert "caption_source_ignored" in codes  # the .txt sidecars are not read


def test_all_images_broken_is_an_error_not_an_exception(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"")
    (root / "b.png").write_bytes(b"not a png at all")
    report = check_dataset(root)
    assert {f.code for f in report.findings if f.severity == "error"} == {"zero_byte", "corrupt", "no_usable_images"}
    assert report.totals["images_unique"] == 0


@pytest.mark.parametrize("make", ["missing", "file", "empty", "non_images"])
def test_folder_problems_raise_bad_input(tmp_path: Path, make: str) -> None:
    target = tmp_path / "ds"
    if make == "file":
        target.write_text("x")
    elif make == "empty":
        target.mkdir()
    elif make == "non_images":
        target.mkdir()
        (target / "readme.md").write_text("x")
    with pytest.raises(BadInputError) as e:
        check_dataset(target)
    assert str(target) in e.value.message and e.value.hint


def test_parallel_check_matches_serial(tmp_path: Path) -> None:
    root = clean_dataset(tmp_path / "ds", n=16, size=(96, 64))
    serial = check_dataset(root, workers=1).to_dict()
    parallel = check_dataset(root, workers=2).to_dict()
    assert serial == parallel


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_image_and_caption(tmp_path: Path) -> None:
    root = clean_dataset(tmp_path / "ds", n=3)
    (root / "img_00.jpg").chmod(0)
    (root / "img_01.txt").chmod(0)
    try:
        report = check_dataset(root)
    finally:
        (root / "img_00.jpg").chmod(0o644)
        (root / "img_01.txt").chmod(0o644)
    errors = [(f.code, f.file, f.message) for f in report.findings if f.severity == "error"]
    assert errors == [("unreadable", "img_00.jpg", "cannot read it (Permission denied)"),
                      ("unreadable", "img_01.txt", "cannot read the caption (Permission denied)")]
    assert "caption_empty" not in {f.code for f in report.findings}
