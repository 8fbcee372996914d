"""Content-addressed prepared datasets: `<cache_root>/datasets/<key>`, one folder per source state and
parameters. An unchanged source is answered from the folder without reading a single image; a changed
one re-uses the images of the previous prepare of the same source folder that are still the same.
"""

from __future__ import annotations

from pathlib import Path

from zlt.core.fsutil import atomic_write_text, sha256_json
from zlt.dataset.dupes import NEAR_DUPLICATE_DISTANCE
from zlt.dataset.folders import source_key
from zlt.dataset.prepare import IMAGE_PARAMS, PrepareResult, prep_params, prepare_dataset
from zlt.dataset.scan import scan_dataset
from zlt.spec.models import JobSpec

KEY_CHARS = 32  # 128 bits of the key name the folder


def cached_dir(src: Path, spec: JobSpec, cache_root: Path, *, flip: bool = False) -> Path:
    """Where `prepare_cached` puts (or finds) SRC prepared with SPEC; lists files but reads no image."""
    scan = scan_dataset(Path(src).expanduser())
    key = source_key(scan, prep_params(spec, flip, NEAR_DUPLICATE_DISTANCE))
    return Path(cache_root) / "datasets" / key[:KEY_CHARS]


def prepare_cached(src: Path, spec: JobSpec, cache_root: Path, *, flip: bool = False,
                   workers: int | None = None) -> PrepareResult:
    """Prepare SRC into the cache; `.reused` is True when an identical prepare already existed."""
    src = Path(src).expanduser().resolve()
    out = cached_dir(src, spec, cache_root, flip=flip)
    # The last prepare of this source folder with the same image parameters: its unchanged images are
    # re-used rather than re-encoded.
    params = prep_params(spec, flip, NEAR_DUPLICATE_DISTANCE)
    image_params = {k: params[k] for k in IMAGE_PARAMS}
    pointer = Path(cache_root) / "datasets" / ".sources" / sha256_json([str(src), image_params])[:KEY_CHARS]
    previous = None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
        previous = out.parent / name if name and "/" not in name else None
    except OSError:
        pass
    result = prepare_dataset(src, out, spec, flip=flip, workers=workers, reuse_from=previous)
    if not result.reused:
        atomic_write_text(pointer, out.name + "\n")
    return result
