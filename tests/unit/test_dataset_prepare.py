"""`prepare_dataset`: the clean folder, its captions and manifest, content addressing and safety."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.unit.test_dataset_factory import clean_dataset, mixed_dataset, pattern, photo
from zlt.core.errors import BadInputError
from zlt.core.fsutil import sha256_file
from zlt.dataset import needs_prepared_flip, prepare_dataset
from zlt.dataset.folders import MANIFEST
from zlt.dataset.prepare import skipped_lines
from zlt.spec import load_spec_data


def spec_of(**dataset):
    return load_spec_data({"dataset": dataset}).spec


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("prep")
    src = mixed_dataset(base / "ds")
    result = prepare_dataset(src, base / "out")
    return src, result, json.loads(result.manifest_path.read_text())


def test_mixed_folder_output(mixed) -> None:
    src, result, manifest = mixed
    out = result.out_dir
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        ".zlt-source-key", "IMG_1234.jpg", "IMG_1234.txt", "cat.png", "cat.txt", "cmyk.jpg", "cmyk.txt", "dog.png",
        "dog.txt", "gray16.png", "gray16.txt", MANIFEST, "red_fox_in-snow_001.jpg", "red_fox_in-snow_001.txt",
        "sub__alpha.png", "sub__alpha.txt", "sub__rot.jpg", "sub__rot.txt",
    ]
    assert (result.num_images, result.num_sources, result.reused) == (8, 8, False)
    assert [(s["file"], s["reason"]) for s in result.skipped] == [
        ("anim.gif", "unsupported_format"), ("bomb.png", "decompression_bomb"), ("broken.jpg", "truncated"),
        ("crc.png", "corrupt"), ("empty.png", "zero_byte"), ("link.jpg", "symlink_outside"),
        ("sub/cat_copy.png", "duplicate"),
        ("sub/fox_small.jpg", "near_duplicate"),
    ]
    assert result.skipped[-1]["duplicate_of"] == "red_fox_in-snow_001.jpg"
    for entry in manifest["images"]:
        with Image.open(out / entry["file"]) as im:
            assert im.mode == "RGB" and im.size == (entry["width"], entry["height"])
            assert max(im.size) <= 1024 and im.width % 64 == 0 and im.height % 64 == 0  # center_crop on a 64 grid
        assert sha256_file(out / entry["file"]) == entry["sha256"]
        assert sha256_file(src / entry["source"]) == entry["source_sha256"]
        assert (out / (entry["file"].rsplit(".", 1)[0] + ".txt")).read_text(encoding="utf-8") == entry["caption"]
        assert entry["caption"].count("<zstyle>") == 1


def test_unreadable_images_are_skipped_and_said_or_refused_under_strict(mixed) -> None:
    src, result, _ = mixed
    lines = skipped_lines(result)
    assert lines[0] == ("dataset: skipped 4 unreadable image(s): bomb.png (decompression_bomb), broken.jpg (truncated), "
                        "crc.png (corrupt), empty.png (zero_byte); training goes on with 8 (dataset.strict: true "
                        "refuses instead)")
    assert lines[1].startswith("dataset: 4 other file(s) skipped while preparing")
    with pytest.raises(BadInputError) as e:  # the same folder, reused: strictness is checked on every answer
        prepare_dataset(src, result.out_dir, spec_of(strict=True))
    assert e.value.exit_code == 2
    assert e.value.message.startswith(f"dataset.strict: 4 image(s) in {src} cannot be read: bomb.png (decompression_bomb")
    assert "dataset.strict: false" in (e.value.hint or "")


def test_manifest_shape(mixed) -> None:
    _, result, manifest = mixed
    assert manifest["version"] == 1
    assert manifest["dataset_sha256"] == result.dataset_sha256
    assert manifest["params"]["resolution"] == 1024 and manifest["params"]["center_crop"] is True
    assert set(manifest["images"][0]) >= {"source", "source_sha256", "file", "sha256", "width", "height", "caption"}
    assert [e["file"] for e in manifest["images"]] == sorted(e["file"] for e in manifest["images"])
    assert result.manifest_sha256 == sha256_file(result.manifest_path)


def test_pixels_are_fixed(mixed) -> None:
    src, result, manifest = mixed
    by_source = {e["source"]: e for e in manifest["images"]}
    out = result.out_dir
    rot = by_source["sub/rot.jpg"]
    assert (rot["width"], rot["height"]) == (384, 576)  # 400x600 upright, cropped to the 64 grid
    with Image.open(out / "sub__alpha.png") as im:
        assert im.getpixel((5, 5)) == (255, 255, 255)  # was transparent
    with Image.open(out / "gray16.png") as im:
        assert im.getpixel((128, 64))[0] in range(110, 150)  # 16-bit mid-grey, not clipped to white
    with Image.open(out / "red_fox_in-snow_001.jpg") as im:
        assert im.size == (1024, 768)  # 1200x900, longest edge to 1024
    assert by_source["cat.png"]["caption"] == "a cat sitting, <zstyle> style"
    assert by_source["dog.webp"]["file"] == "dog.png"
    assert by_source["dog.webp"]["caption"] == "<zstyle>, un chien \ufffd la plage"


def test_rerun_does_no_work_and_keeps_the_manifest_hash(mixed, tmp_path: Path) -> None:
    src, first, _ = mixed
    again = prepare_dataset(src, first.out_dir)
    assert again.reused and again.manifest_sha256 == first.manifest_sha256
    # The same source elsewhere gives the same dataset hash: it depends on content only.
    copy = tmp_path / "copy"
    shutil.copytree(src, copy, symlinks=True)
    elsewhere = prepare_dataset(copy, tmp_path / "out2")
    assert not elsewhere.reused and elsewhere.dataset_sha256 == first.dataset_sha256


def test_touched_source_redoes_the_work_with_the_same_result(tmp_path: Path) -> None:
    src = clean_dataset(tmp_path / "ds", n=3)
    first = prepare_dataset(src, tmp_path / "out")
    st = (src / "img_00.jpg").stat()
    os.utime(src / "img_00.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = prepare_dataset(src, tmp_path / "out")
    assert not second.reused and second.images_reused == 3  # content unchanged: copied, not re-encoded
    assert (second.dataset_sha256, second.manifest_sha256) == (first.dataset_sha256, first.manifest_sha256)


def test_changed_image_and_caption(tmp_path: Path) -> None:
    src = clean_dataset(tmp_path / "ds", n=3, size=(1200, 900))
    first = prepare_dataset(src, tmp_path / "out")
    photo(src / "img_01.jpg", (1200, 900), seed=999, quality=92)
    (src / "img_02.txt").write_text("a new caption", encoding="utf-8")
    second = prepare_dataset(src, tmp_path / "out")
    assert second.images_reused == 2 and second.dataset_sha256 != first.dataset_sha256
    manifest = json.loads(second.manifest_path.read_text())
    assert manifest["images"][2]["caption"] == "<zstyle>, a new caption"
    assert (tmp_path / "out" / "img_02.txt").read_text() == "<zstyle>, a new caption"
    # a caption-only change re-uses every image
    (src / "img_02.txt").write_text("another caption", encoding="utf-8")
    assert prepare_dataset(src, tmp_path / "out").images_reused == 3


def test_no_upscale_unless_asked_and_no_crop_when_off(tmp_path: Path) -> None:
    src = tmp_path / "ds"
    photo(src / "small.png", (300, 200), seed=1)
    plain = prepare_dataset(src, tmp_path / "a", spec_of(center_crop=False))
    assert json.loads(plain.manifest_path.read_text())["images"][0]["width"] == 300
    assert sha256_file(tmp_path / "a" / "small.png") == sha256_file(src / "small.png")  # untouched: copied as is
    up = prepare_dataset(src, tmp_path / "b", spec_of(center_crop=False, upscale=True, resolution=512))
    e = json.loads(up.manifest_path.read_text())["images"][0]
    assert (e["width"], e["height"]) == (512, 341)


def test_flip_writes_mirrored_copies(tmp_path: Path) -> None:
    src = tmp_path / "ds"
    src.mkdir()
    im = pattern((128, 64), 7)
    im.save(src / "p.png")
    result = prepare_dataset(src, tmp_path / "out", spec_of(resolution=512, center_crop=False), flip=True)
    assert result.num_images == 2 and result.num_sources == 1
    with Image.open(tmp_path / "out" / "p_flip.png") as flipped:
        assert flipped.getpixel((0, 10)) == im.getpixel((127, 10))
    assert (tmp_path / "out" / "p_flip.txt").read_text() == "<zstyle>, p"
    entries = json.loads(result.manifest_path.read_text())["images"]
    assert [(e["file"], e["flipped"]) for e in entries] == [("p.png", False), ("p_flip.png", True)]


def test_needs_prepared_flip() -> None:
    musubi = load_spec_data({"training": {"backend": "musubi"}}).spec
    assert needs_prepared_flip(musubi)  # the style preset asks for flips; musubi cannot flip
    assert not needs_prepared_flip(load_spec_data({}).spec)  # the built-in trainer flips itself
    no_flip = load_spec_data({"training": {"backend": "musubi"}, "dataset": {"augment": {"horizontal_flip": False}}}).spec
    assert not needs_prepared_flip(no_flip)


def test_name_collisions_get_unique_stems(tmp_path: Path) -> None:
    src = tmp_path / "ds"
    photo(src / "a.png", (32, 32), seed=1)
    photo(src / "a.bmp", (32, 32), seed=2)
    photo(src / "A.jpg", (32, 32), seed=3)
    photo(src / "x" / "y.png", (32, 32), seed=4)
    photo(src / "x__y.png", (32, 32), seed=5)
    result = prepare_dataset(src, tmp_path / "out", spec_of(resolution=512))
    files = sorted(e["file"] for e in json.loads(result.manifest_path.read_text())["images"])
    assert files == ["A.jpg", "a_2.png", "a_3.png", "x__y.png", "x__y_2.png"]


def test_refuses_dangerous_out_dirs(tmp_path: Path) -> None:
    src = clean_dataset(tmp_path / "ds", n=1)
    with pytest.raises(BadInputError, match="inside the source folder"):
        prepare_dataset(src, src / "prepared")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "holiday.jpg").write_text("precious")
    with pytest.raises(BadInputError, match="was not written by 'zlt dataset prepare'"):
        prepare_dataset(src, user)
    assert (user / "holiday.jpg").read_text() == "precious"


def test_killed_prepare_leaves_no_complete_looking_folder(tmp_path: Path) -> None:
    src = clean_dataset(tmp_path / "ds", n=2)
    out = tmp_path / "out"
    stale = tmp_path / ".out.tmp-deadbeef"  # what a prepare killed mid-way leaves behind
    stale.mkdir()
    (stale / "img_00.jpg").write_text("half")
    result = prepare_dataset(src, out)
    assert not stale.exists() and (out / MANIFEST).is_file() and result.num_images == 2
    (out / "img_00.jpg").unlink()  # an output went missing: not reused, rebuilt
    again = prepare_dataset(src, out)
    assert not again.reused and (out / "img_00.jpg").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == [".out.lock"]


def test_only_broken_images_is_bad_input(tmp_path: Path) -> None:
    src = tmp_path / "ds"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"")
    with pytest.raises(BadInputError, match="none of the 1 image"):
        prepare_dataset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "ds"]  # no temp folder left


def test_blocking_caption_config_is_bad_input(tmp_path: Path) -> None:
    src = clean_dataset(tmp_path / "ds", n=1)
    with pytest.raises(BadInputError, match="no metadata.csv or metadata.jsonl"):
        prepare_dataset(src, tmp_path / "out", spec_of(caption={"strategy": "metadata"}))


@pytest.mark.slow
def test_parallel_prepare_matches_serial(tmp_path: Path) -> None:
    src = clean_dataset(tmp_path / "ds", n=16, size=(200, 150))
    serial = prepare_dataset(src, tmp_path / "a", workers=1)
    parallel = prepare_dataset(src, tmp_path / "b", workers=2)
    assert parallel.dataset_sha256 == serial.dataset_sha256
    assert (tmp_path / "a" / MANIFEST).read_bytes() == (tmp_path / "b" / MANIFEST).read_bytes()
