"""Walking a dataset folder: recursion, hidden files, caches, symlinks, and folder-level bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.test_dataset_factory import photo
from zlt.core.errors import BadInputError
from zlt.dataset.scan import scan_dataset


def test_recursive_listing_skips_hidden_and_caches(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    photo(root / "a.jpg", (16, 16))
    photo(root / "deep" / "er" / "b.png", (16, 16))
    (root / "a.txt").write_text("x")
    (root / ".DS_Store").write_text("x")
    photo(root / "._a.jpg", (16, 16))  # AppleDouble: an image extension, not an image
    (root / "_latent_cache").mkdir()
    (root / "_latent_cache" / "a.safetensors").write_text("x")
    (root / "__MACOSX").mkdir()
    (root / ".git").mkdir()
    (root / "clip.gif").write_text("x")
    scan = scan_dataset(root)
    assert [f.rel for f in scan.files] == ["a.jpg", "a.txt", "clip.gif", "deep/er/b.png"]
    assert [f.rel for f in scan.images] == ["a.jpg", "deep/er/b.png"]
    assert [f.rel for f in scan.unsupported] == ["clip.gif"]
    assert sorted(scan.hidden) == [".DS_Store", "._a.jpg", ".git/", "__MACOSX/", "_latent_cache/"]
    assert scan.files[0].size == (root / "a.jpg").stat().st_size


def test_symlinks_inside_are_followed_outside_are_not(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    photo(root / "real" / "a.jpg", (16, 16))
    photo(tmp_path / "elsewhere" / "secret.jpg", (16, 16))
    (root / "alias").symlink_to(root / "real")  # same folder twice: listed once
    (root / "inner.jpg").symlink_to(root / "real" / "a.jpg")
    (root / "out.jpg").symlink_to(tmp_path / "elsewhere" / "secret.jpg")
    (root / "outdir").symlink_to(tmp_path / "elsewhere")
    (root / "dangling.jpg").symlink_to(root / "nope.jpg")
    (root / "real" / "loop").symlink_to(root)
    scan = scan_dataset(root)
    assert [f.rel for f in scan.files] == ["inner.jpg", "real/a.jpg"]
    reasons = dict(scan.skipped_links)
    assert set(reasons) == {"out.jpg", "outdir", "dangling.jpg"}
    assert reasons["dangling.jpg"] == "broken symlink"
    assert reasons["out.jpg"].startswith("symlink points outside the dataset folder")


def test_missing_not_a_folder_empty(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="dataset folder not found"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "f.jpg").write_text("x")
    with pytest.raises(BadInputError, match="is a file, not a folder"):
        scan_dataset(tmp_path / "f.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="the dataset folder is empty") as e:
        scan_dataset(tmp_path / "empty")
    assert "png, jpg, jpeg, webp, bmp" in e.value.hint
    (tmp_path / "empty" / ".DS_Store").write_text("x")
    with pytest.raises(BadInputError, match=r"is empty \(only 1 hidden entries\)"):
        scan_dataset(tmp_path / "empty")


def test_only_non_images_names_them(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "notes.md").write_text("x")
    (root / "clip.gif").write_text("x")
    with pytest.raises(BadInputError) as e:
        scan_dataset(root)
    assert e.value.message == f"{root}: no images found, only other files: clip.gif, notes.md"
    assert "convert the 1 unsupported image file(s) (e.g. clip.gif) to PNG or JPEG" in e.value.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_folder(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    photo(root / "a.jpg", (16, 16))
    photo(root / "locked" / "b.jpg", (16, 16))
    (root / "locked").chmod(0)
    try:
        scan = scan_dataset(root)
        assert scan.unreadable == ["locked"]
        root.chmod(0)
        with pytest.raises(BadInputError, match="cannot read the dataset folder"):
            scan_dataset(root)
    finally:
        root.chmod(0o755)
        (root / "locked").chmod(0o755)
