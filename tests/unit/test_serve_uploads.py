"""Fenced zip extraction and dataset/output path fences of the HTTP server."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from zlt.core.errors import BadInputError
from zlt.flows.fences import fence_dataset_path, fence_output_path
from zlt.serve.uploads import (
    Limits,
    UploadRefused,
    UploadTooLarge,
    extract_zip,
)

SMALL = Limits(max_extract_bytes=1 << 20, max_extract_files=50, max_ratio=50)


def make_zip(entries: list[tuple[str, bytes]], *, symlinks: dict[str, str] | None = None,
             method: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    buf.seek(0)
    return buf


def leftovers(uploads: Path) -> list[str]:
    return sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*")) if uploads.exists() else []


def test_a_zipped_folder_becomes_the_dataset_root(tmp_path: Path):
    z = make_zip([("watercolor/a.png", b"png-a"), ("watercolor/a.txt", b"a cat"), ("__MACOSX/._a.png", b"junk")])
    got = extract_zip(z, tmp_path / "uploads", SMALL, label="Watercolor Set.zip")
    assert got.root.name == "watercolor_set"
    assert sorted(p.name for p in got.root.iterdir()) == ["a.png", "a.txt"]
    assert (got.files, got.bytes) == (2, len(b"png-a") + len(b"a cat"))
    assert not any(p.name.startswith(".incoming") for p in (tmp_path / "uploads").iterdir())


def test_loose_files_stay_at_the_root(tmp_path: Path):
    got = extract_zip(make_zip([("a.png", b"x"), ("b.png", b"y")]), tmp_path / "up", SMALL)
    assert sorted(p.name for p in got.root.iterdir()) == ["a.png", "b.png"]


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "..\\evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_zip_slip_is_refused_and_nothing_is_written(tmp_path: Path, name: str):
    uploads = tmp_path / "uploads"
    with pytest.raises(UploadRefused, match="zip"):
        extract_zip(make_zip([("a.png", b"x"), (name, b"pwned")]), uploads, SMALL)
    assert not (tmp_path / "evil.txt").exists()
    assert leftovers(uploads) == []


def test_symlinks_are_refused(tmp_path: Path):
    with pytest.raises(UploadRefused, match="symlink"):
        extract_zip(make_zip([("a.png", b"x")], symlinks={"link.png": "/etc/passwd"}), tmp_path / "up", SMALL)
    assert leftovers(tmp_path / "up") == []


def test_a_zip_bomb_is_refused_by_ratio(tmp_path: Path):
    bomb = make_zip([("zeros.png", b"\0" * (4 << 20))])  # 4 MiB of zeros -> a few KiB
    with pytest.raises(UploadTooLarge, match="zip bomb"):
        extract_zip(bomb, tmp_path / "up", Limits(max_extract_bytes=64 << 20, max_ratio=50))


def test_total_uncompressed_size_is_capped(tmp_path: Path):
    data = os.urandom(300_000)  # incompressible, so only the total cap can stop it
    z = make_zip([(f"{i}.png", data) for i in range(5)], method=zipfile.ZIP_STORED)
    with pytest.raises(UploadTooLarge, match="expands to more than"):
        extract_zip(z, tmp_path / "up", SMALL)
    assert leftovers(tmp_path / "up") == []


def test_file_count_is_capped(tmp_path: Path):
    z = make_zip([(f"{i}.txt", b"x") for i in range(51)])
    with pytest.raises(UploadTooLarge, match="51 members"):
        extract_zip(z, tmp_path / "up", SMALL)


def test_not_a_zip_and_an_empty_zip_are_refused(tmp_path: Path):
    with pytest.raises(UploadRefused, match="not a zip"):
        extract_zip(io.BytesIO(b"hello"), tmp_path / "up", SMALL)
    with pytest.raises(UploadRefused, match="no files"):
        extract_zip(make_zip([("empty/", b"")]), tmp_path / "up", SMALL)


def test_duplicate_members_are_refused(tmp_path: Path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", b"1")
        with pytest.warns(UserWarning):
            zf.writestr("a.png", b"2")
    buf.seek(0)
    with pytest.raises(UploadRefused, match="twice"):
        extract_zip(buf, tmp_path / "up", SMALL)


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    (root / "style").mkdir(parents=True)
    (root / "style" / "a.png").write_bytes(b"x")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.png").write_bytes(b"k")
    return root, outside


def test_dataset_paths_inside_a_root_resolve(roots):
    root, _ = roots
    assert fence_dataset_path(str(root / "style"), [root], Limits()) == (root / "style").resolve()
    assert fence_dataset_path("style", [root], Limits()) == (root / "style").resolve()


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlinked_folder", "symlinked_file", "missing"])
def test_dataset_paths_outside_the_roots_are_refused(roots, how: str):
    root, outside = roots
    raw = {"absolute": str(outside), "dotdot": "style/../../secret", "symlinked_folder": "link",
           "symlinked_file": "style", "missing": "nope"}[how]
    if how == "symlinked_folder":
        (root / "link").symlink_to(outside)
    if how == "symlinked_file":
        (root / "style" / "b.png").symlink_to(outside / "key.png")
    with pytest.raises(BadInputError, match=r"^dataset\.path: "):
        fence_dataset_path(raw, [root], Limits())


def test_no_data_roots_means_no_paths(roots):
    with pytest.raises(BadInputError, match="without --data-root"):
        fence_dataset_path(str(roots[0] / "style"), [], Limits())


def test_output_paths_are_fenced(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    assert fence_output_path("artifacts/lora", [home]) == (home / "artifacts" / "lora").resolve()
    with pytest.raises(BadInputError, match=r"^output\.registry\.path: /artifacts/lora/ is outside"):
        fence_output_path("/artifacts/lora/", [home])
