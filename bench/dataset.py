"""Dataset intake throughput against a plain Pillow loop, in the same process and on the same files.

Generates COUNT images of 1-4 MP (80% JPEG, 20% PNG; half with sidecar captions), then times:
  plain   - for each file: Image.open, convert('RGB'), resize (longest edge 1024, LANCZOS), save
            with the encoder settings prepare uses; one process
  check   - zlt's check_dataset (sha256, verify, full decode, pHash, captions, duplicates)
  prepare - zlt's prepare_dataset (everything check does, plus EXIF/RGB/resize/crop/encode/manifest)
and prints images/s and the ratio to the plain loop (targets: check >= 0.9x, prepare >= 0.8x).
check and prepare use every core by default; `--workers 1` shows the per-core overhead.

    python bench/dataset.py [--count 500] [--workers N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def make_image(job: tuple[str, int]) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    path, seed = job
    rng = np.random.default_rng(seed)
    megapixels = rng.uniform(1.0, 4.0)
    aspect = rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9]) ** rng.choice([-1, 1])
    w = int((megapixels * 1e6 * aspect) ** 0.5)
    h = int(megapixels * 1e6 / w)
    im = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        ew, eh = (int(v) for v in rng.integers(w // 30, w // 3, 2))
        draw.ellipse([x, y, x + ew, y + eh], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    # photo-like grain so the files compress like photos, not like flat drawings
    arr = np.asarray(im, dtype=np.int16) + rng.integers(-8, 9, (h, w, 1), dtype=np.int16)
    im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if path.endswith(".png"):
        im.save(path, "PNG", compress_level=1)  # fast to generate; decoding costs the same at any level
    else:
        im.save(path, "JPEG", quality=90)
    if seed % 2 == 0:
        Path(path).with_suffix(".txt").write_text(f"a picture number {seed}", encoding="utf-8")


def generate(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder / f"img_{i:04d}.{'png' if i % 5 == 4 else 'jpg'}"), i) for i in range(count)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(make_image, jobs, chunksize=4))


def plain_loop(src: Path, out: Path, resolution: int) -> int:
    from PIL import Image

    from zlt.dataset.images import fit_size
    from zlt.dataset.prepare import save_options

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for path in sorted(src.iterdir()):
        if path.suffix not in (".jpg", ".png"):
            continue
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            rgb = rgb.resize(fit_size(rgb.width, rgb.height, resolution, False), Image.Resampling.LANCZOS)
            fmt = "JPEG" if path.suffix == ".jpg" else "PNG"
            rgb.save(out / path.name, **save_options(fmt))
        n += 1
    return n


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500, help="images to generate (default 500)")
    ap.add_argument("--workers", type=int, default=None, help="processes for check/prepare (default: all cores)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (kept); default: a temp folder (removed)")
    args = ap.parse_args()

    from zlt.dataset import check_dataset, prepare_dataset
    from zlt.dataset.parallel import resolve_workers
    from zlt.spec import load_spec_data

    work = args.dir or Path(tempfile.mkdtemp(prefix="zlt-bench-"))
    src = work / "src"
    try:
        if not src.is_dir() or len(list(src.glob("img_*"))) < args.count:
            print(f"generating {args.count} images of 1-4 MP in {src} ...", flush=True)
            shutil.rmtree(src, ignore_errors=True)
            generate(src, args.count)
        spec = load_spec_data({}).spec
        n = args.count
        workers = resolve_workers(args.workers, n)
        # Warm the page cache so the first timed run does not pay for the disk.
        for p in src.iterdir():
            p.read_bytes()
        t_plain = timed(lambda: plain_loop(src, work / "plain", spec.dataset.resolution))
        t_check = timed(lambda: check_dataset(src, spec, workers=args.workers))
        shutil.rmtree(work / "prepared", ignore_errors=True)
        t_prep = timed(lambda: prepare_dataset(src, work / "prepared", spec, workers=args.workers))
        t_plain2 = timed(lambda: plain_loop(src, work / "plain", spec.dataset.resolution))
        t_reuse = timed(lambda: prepare_dataset(src, work / "prepared", spec, workers=args.workers))
        plain = (t_plain + t_plain2) / 2
        print(f"{n} images, {workers} worker process(es), {os.cpu_count()} cores")
        print(f"  plain loop   {n / plain:7.1f} images/s   1.00x")
        print(f"  check        {n / t_check:7.1f} images/s   {plain / t_check:.2f}x   (target >= 0.90x)")
        print(f"  prepare      {n / t_prep:7.1f} images/s   {plain / t_prep:.2f}x   (target >= 0.80x)")
        print(f"  re-prepare   {n / t_reuse:7.0f} images/s   {plain / t_reuse:.0f}x   (unchanged source: no image work)")
        ok = plain / t_check >= 0.9 and plain / t_prep >= 0.8
        return 0 if ok else 1
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
