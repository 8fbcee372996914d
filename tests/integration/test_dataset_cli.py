"""`zlt dataset check` / `zlt dataset prepare` as a user or an agent runs them (real subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_dataset_factory import clean_dataset, mixed_dataset


def test_check_clean_folder_exits_0(zlt, tmp_path: Path) -> None:
    root = clean_dataset(tmp_path / "ds", n=15, size=(320, 240))
    r = zlt("dataset", "check", str(root), "--set", "dataset.resolution=256")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"dataset {root}"
    assert "  images: 15 found, 15 usable, 15 unique" in r.stdout
    assert "  count_ok               15 unique usable image(s); the style preset advises 15-200" in lines
    assert lines[-1] == "result: ready to train (0 warnings, 2 info)"


def test_check_blocking_problems_exit_2_with_json(zlt, tmp_path: Path) -> None:
    root = mixed_dataset(tmp_path / "ds")
    r = zlt("dataset", "check", str(root), "--json", "--set", "dataset.strict=true")
    assert r.returncode == 2  # dataset.strict: the unreadable images block
    report = json.loads(r.stdout)
    assert report["ok"] is False and report["counts"] == {"error": 4, "warning": 18, "info": 4}
    errors = sorted((f["code"], f["file"]) for f in report["findings"] if f["severity"] == "error")
    assert errors == [("corrupt", "crc.png"), ("decompression_bomb", "bomb.png"), ("truncated", "broken.jpg"),
                      ("zero_byte", "empty.png")]
    assert len(report["images"]) == 14
    text = zlt("dataset", "check", str(root), "--images")
    assert text.returncode == 0  # by default prepare skips them and training goes on: the verdict says so
    assert ("result: ready to train on 10 image(s); prepare skips 4 unreadable image(s), dataset.strict: true "
            "refuses them instead (18 warnings, 4 info)") in text.stdout
    assert "  error                    - -     none     empty.png  [zero_byte]" in text.stdout


def test_bad_folders_exit_2_naming_them(zlt, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    r = zlt("dataset", "check", str(missing))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        f"error: {missing}: dataset folder not found",
        "hint: check the path; pass the folder that holds the images",
    ]
    r = zlt("dataset", "check", str(missing), "--json")
    assert r.returncode == 2
    assert json.loads(r.stdout) == {
        "ok": False, "error": "bad_input", "message": f"{missing}: dataset folder not found",
        "hint": "check the path; pass the folder that holds the images", "exit_code": 2,
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    r = zlt("dataset", "prepare", str(empty), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and f"error: {empty}: the dataset folder is empty" in r.stderr
    (empty / "notes.txt").write_text("x")
    r = zlt("dataset", "check", str(empty))
    assert r.returncode == 2 and f"error: {empty}: no images found, only other files: notes.txt" in r.stderr
    r = zlt("dataset", "check")
    assert r.returncode == 2 and "error: no dataset folder given" in r.stderr


def test_spec_supplies_folder_and_settings(zlt, tmp_path: Path) -> None:
    clean_dataset(tmp_path / "images", n=2, size=(200, 100))
    spec = tmp_path / "job.yaml"
    spec.write_text("preset: character\ndataset:\n  path: images\n  resolution: 512\n", encoding="utf-8")
    r = zlt("dataset", "check", "--spec", str(spec), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["path"] == str((tmp_path / "images").resolve())
    assert report["settings"]["preset"] == "character" and report["settings"]["resolution"] == 512
    assert report["totals"]["advice"] == {"preset": "character", "min": 70, "max": 80, "count": 2, "status": "low"}
    assert report["totals"]["shot_mix"]["unknown"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset:\n  resolutoin: 512\n", encoding="utf-8")
    r = zlt("dataset", "check", str(tmp_path / "images"), "--spec", str(bad))
    assert r.returncode == 2 and "dataset.resolutoin: unknown field" in r.stderr


def test_prepare_then_rerun_does_nothing(zlt, tmp_path: Path) -> None:
    root = mixed_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    r = zlt("dataset", "prepare", str(root), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["ok"] and first["num_images"] == 8 and not first["reused"]
    assert [s["reason"] for s in first["skipped"]] == [
        "unsupported_format", "decompression_bomb", "truncated", "corrupt", "zero_byte", "symlink_outside", "duplicate",
        "near_duplicate"]
    r = zlt("dataset", "prepare", str(root), "--out", str(out))
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[:3] == [
        f"unchanged source: {out} is up to date (no image work)",
        f"  dataset sha256 {first['dataset_sha256']}",
        f"  manifest {out / 'manifest.json'}",
    ]
    assert "    zero_byte            empty.png: the file is empty (0 bytes)" in lines


def test_prepare_into_the_cache(zlt, zlt_home: Path, tmp_path: Path) -> None:
    root = clean_dataset(tmp_path / "ds", n=2)
    r = zlt("dataset", "prepare", str(root), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert Path(result["out_dir"]).parent == zlt_home / "cache" / "datasets"
    again = json.loads(zlt("dataset", "prepare", str(root), "--json").stdout)
    assert again["reused"] and again["dataset_sha256"] == result["dataset_sha256"]


def test_prepare_only_broken_images_exit_2(zlt, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"")
    r = zlt("dataset", "prepare", str(root), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert f"error: {root.resolve()}: none of the 1 image(s) can be used: a.jpg (zero_byte)" in r.stderr
