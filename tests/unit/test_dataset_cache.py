"""`prepare_cached`: one content-addressed folder per source state and parameters."""

from __future__ import annotations

import os
from pathlib import Path

from tests.unit.test_dataset_factory import clean_dataset, photo
from zlt.dataset import cached_dir, prepare_cached
from zlt.spec import load_spec_data


def test_second_call_reads_no_image(tmp_path: Path) -> None:
    src = clean_dataset(tmp_path / "ds", n=3)
    spec = load_spec_data({}).spec
    cache = tmp_path / "cache"
    first = prepare_cached(src, spec, cache)
    assert not first.reused and first.out_dir == cached_dir(src, spec, cache)
    assert first.out_dir.parent == cache / "datasets"
    # Swap an image's bytes for garbage of the same size and mtime: only a run that reads images could notice.
    img = src / "img_01.jpg"
    st = img.stat()
    img.write_bytes(b"\0" * st.st_size)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = prepare_cached(src, spec, cache)
    assert second.reused and second.out_dir == first.out_dir
    assert (second.dataset_sha256, second.manifest_sha256) == (first.dataset_sha256, first.manifest_sha256)


def test_parameters_and_sources_get_their_own_folders(tmp_path: Path) -> None:
    src = clean_dataset(tmp_path / "ds", n=2)
    cache = tmp_path / "cache"
    base = load_spec_data({}).spec
    a = prepare_cached(src, base, cache)
    b = prepare_cached(src, load_spec_data({"dataset": {"resolution": 512}}).spec, cache)
    c = prepare_cached(src, base, cache, flip=True)
    assert len({a.out_dir, b.out_dir, c.out_dir}) == 3
    assert len({a.dataset_sha256, b.dataset_sha256, c.dataset_sha256}) == 3
    # A changed source: a new folder; its unchanged images come from the previous prepare of this source.
    photo(src / "img_02.jpg", (640, 480), seed=77)
    d = prepare_cached(src, base, cache)
    assert d.out_dir != a.out_dir and not d.reused and d.images_reused == 2 and d.num_images == 3
    assert a.manifest_path.is_file()  # earlier prepares stay (jobs may still use them)
