"""`zlt dataset prepare`: write a clean, flat training folder and its manifest, never touching the source.

Each image is validated, EXIF-rotated, converted to 8-bit RGB, resized (longest edge = resolution,
never upscaled unless asked), optionally bucket-cropped and mirrored, and written next to a sidecar
caption with the trigger inserted once. Corrupt files are skipped and listed; duplicates dropped.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_text, sha256_bytes, sha256_file, sha256_json
from zlt.dataset.captions import plan_captions
from zlt.dataset.check import default_spec
from zlt.dataset.dupes import NEAR_DUPLICATE_DISTANCE, DupItem, find_duplicates
from zlt.dataset.folders import (
    MANIFEST,
    PREP_VERSION,
    SOURCE_KEY_FILE,
    check_out_dir,
    clean_stale,
    locked,
    new_temp_dir,
    outputs_present,
    read_manifest,
    source_key,
    swap_in,
)
from zlt.dataset.images import (
    MAX_PIXELS,
    apply_orientation,
    bucket_crop_box,
    bucket_step,
    decode,
    fit_size,
    to_rgb,
)
from zlt.dataset.parallel import map_files
from zlt.dataset.report import SKIPPABLE
from zlt.dataset.scan import ScanResult, scan_dataset
from zlt.spec.models import JobSpec

FILE_MODE = 0o644  # like the images beside it (atomic writes would leave 0600)
JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 1  # lossless either way; level 1 encodes ~4x faster than 6 for ~10% more bytes
# The parameters that change image bytes; captions can change without re-encoding any image.
IMAGE_PARAMS = ("prep_version", "resolution", "upscale", "center_crop", "crop_step", "flip", "max_pixels",
                "jpeg_quality", "png_compress_level")
# Trainers that cannot mirror images themselves: prepare writes the flipped copies for them.
TRAINERS_WITHOUT_FLIP = frozenset({"musubi"})


def needs_prepared_flip(spec: JobSpec) -> bool:
    """True when the spec asks for flips and its trainer cannot flip (so prepare must write them)."""
    return spec.dataset.augment.horizontal_flip and spec.training.backend in TRAINERS_WITHOUT_FLIP


def prep_params(spec: JobSpec, flip: bool, near_duplicate_distance: int | None) -> dict[str, Any]:
    """Every parameter that shapes the prepared folder; recorded in the manifest and hashed."""
    ds, cap = spec.dataset, spec.dataset.caption
    return {
        "prep_version": PREP_VERSION, "resolution": ds.resolution, "upscale": ds.upscale,
        "center_crop": ds.center_crop, "crop_step": bucket_step(ds.resolution), "flip": flip,
        "caption_strategy": cap.strategy, "caption_ext": cap.caption_ext, "trigger_token": cap.trigger_token,
        "trigger_position": cap.trigger_position, "default_caption": cap.default_caption,
        "near_duplicate_distance": near_duplicate_distance, "max_pixels": MAX_PIXELS,
        "jpeg_quality": JPEG_QUALITY, "png_compress_level": PNG_COMPRESS_LEVEL,
    }


@dataclass
class PrepareResult:
    out_dir: Path
    manifest_path: Path
    dataset_sha256: str
    num_images: int  # image files written (mirrored copies included)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"file", "reason", "detail"}
    reused: bool = False  # the whole folder was reused: no image was read
    num_sources: int = 0  # source images kept (before mirroring)
    images_reused: int = 0  # images copied from a previous prepare instead of re-encoded
    manifest_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir), "manifest_path": str(self.manifest_path),
            "dataset_sha256": self.dataset_sha256, "num_images": self.num_images, "num_sources": self.num_sources,
            "skipped": self.skipped, "reused": self.reused, "images_reused": self.images_reused,
            "manifest_sha256": self.manifest_sha256,
        }


def save_options(fmt: str) -> dict[str, Any]:
    """Encoder settings of prepared images (the benchmark's plain loop uses the same)."""
    if fmt == "JPEG":
        return {"format": "JPEG", "quality": JPEG_QUALITY, "subsampling": 0}
    return {"format": "PNG", "compress_level": PNG_COMPRESS_LEVEL}


def _encode(im: Any, fmt: str, icc: bytes | None) -> bytes:
    buf = io.BytesIO()
    im.save(buf, **save_options(fmt), **({"icc_profile": icc} if icc else {}))
    return buf.getvalue()


def _transform(im: Any, orientation: int, p: dict[str, Any]) -> Any:
    from PIL import Image

    im = to_rgb(apply_orientation(im, orientation))
    size = fit_size(im.width, im.height, p["resolution"], p["upscale"])
    if size != im.size:
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if p["center_crop"]:
        box = bucket_crop_box(im.width, im.height, p["crop_step"])
        if box != (0, 0, im.width, im.height):
            im = im.crop(box)
    return im


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def process_image(ctx: dict[str, Any], job: tuple[str, str, str | None]) -> dict[str, Any]:
    """Prepare one image into `ctx['tmp']` (runs in a worker process); returns what the manifest needs.

    `ctx` holds root, tmp, params and the reuse map; `job` is (source rel path, stem, mirrored stem).
    """
    from PIL import ImageOps

    rel, stem, flip_stem = job
    p, tmp = ctx["params"], Path(ctx["tmp"])
    res: dict[str, Any] = {"rel": rel}
    try:
        data = (Path(ctx["root"]) / rel).read_bytes()
    except OSError as e:
        return {**res, "error": "unreadable", "detail": f"cannot read it ({e.strerror or e})"}
    sha = sha256_bytes(data)
    res["source_sha256"] = sha
    old = ctx["reuse"].get(sha)
    if old and all(Path(f).is_file() for f in old["paths"]):
        res.update(old["result"], reused=True)
        for key, name, src_path in zip(("file", "flip_file"), (stem, flip_stem), old["paths"], strict=False):
            res[key] = f"{name}{Path(src_path).suffix}"
            _link_or_copy(Path(src_path), tmp / res[key])
        return res
    probe, im = decode(data, p["max_pixels"], sha256=sha)
    if not probe.ok:
        return {**res, "error": probe.error, "detail": probe.error_detail}
    fmt = "JPEG" if probe.format in ("JPEG", "MPO") else "PNG"
    ext = ".jpg" if fmt == "JPEG" else ".png"
    out_im = _transform(im, probe.exif_orientation, p)
    untouched = (
        probe.format in ("JPEG", "PNG") and probe.mode == "RGB" and probe.bit_depth == 8
        and probe.exif_orientation == 1 and not probe.has_alpha and out_im.size == im.size
    )
    icc = im.info.get("icc_profile") if im.mode == "RGB" else None
    out_bytes = data if untouched else _encode(out_im, fmt, icc)
    (tmp / (stem + ext)).write_bytes(out_bytes)
    res.update(file=stem + ext, sha256=sha256_bytes(out_bytes), width=out_im.width, height=out_im.height,
               phash=probe.phash, pixels=probe.width * probe.height, reused=False)
    if flip_stem:
        flip_bytes = _encode(ImageOps.mirror(out_im), fmt, icc)
        (tmp / (flip_stem + ext)).write_bytes(flip_bytes)
        res.update(flip_file=flip_stem + ext, flip_sha256=sha256_bytes(flip_bytes))
    return res


def _allocate_stems(rels: list[str], flip: bool) -> dict[str, tuple[str, str | None]]:
    """Flat, unique (case-insensitively) output stems: `sub/a.png` -> `sub__a`; mirrored copies `<stem>_flip`."""
    used: set[str] = set()

    def take(stem: str) -> str:
        cand, i = stem, 2
        while cand.lower() in used:
            cand, i = f"{stem}_{i}", i + 1
        used.add(cand.lower())
        return cand

    stems = {rel: take(rel.rsplit(".", 1)[0].replace("/", "__")) for rel in rels}
    return {rel: (stem, take(stem + "_flip") if flip else None) for rel, stem in stems.items()}


def _reuse_map(previous: Path | None, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """source sha256 -> outputs of a previous prepare with the same parameters (re-used, not re-encoded)."""
    manifest = read_manifest(previous) if previous else None
    if not manifest or any(manifest.get("params", {}).get(k) != params[k] for k in IMAGE_PARAMS):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for e in manifest["images"]:
        slot = out.setdefault(e["source_sha256"], {"paths": [None, None], "result": {}})
        if e.get("flipped"):
            slot["paths"][1] = str(previous / e["file"])
            slot["result"].update(flip_file=e["file"], flip_sha256=e["sha256"])
        else:
            slot["paths"][0] = str(previous / e["file"])
            slot["result"].update(file=e["file"], sha256=e["sha256"], width=e["width"], height=e["height"],
                                  phash=e.get("phash"), pixels=e.get("source_pixels", 0))
    return {k: {**v, "paths": [p for p in v["paths"] if p]} for k, v in out.items()
            if v["paths"][0] and (v["paths"][1] or not params["flip"])}


def result_from_manifest(out: Path, manifest: dict[str, Any], *, reused: bool, images_reused: int = 0) -> PrepareResult:
    return PrepareResult(
        out_dir=out, manifest_path=out / MANIFEST, dataset_sha256=manifest["dataset_sha256"],
        num_images=len(manifest["images"]), skipped=manifest.get("skipped", []), reused=reused,
        num_sources=sum(1 for e in manifest["images"] if not e.get("flipped")), images_reused=images_reused,
        manifest_sha256=sha256_file(out / MANIFEST),
    )


def prepare_dataset(
    src: Path, out: Path, spec: JobSpec | None = None, *, flip: bool = False, workers: int | None = None,
    near_duplicate_distance: int | None = NEAR_DUPLICATE_DISTANCE, reuse_from: Path | None = None,
) -> PrepareResult:
    """Write the clean training folder OUT from SRC. Re-running on an unchanged source does no image work.

    `flip` also writes mirrored copies (for trainers that cannot flip); `near_duplicate_distance=None`
    keeps look-alikes; `reuse_from` names another prepared folder whose images may be re-used.
    """
    spec = spec or default_spec()
    src, out = Path(src).expanduser(), Path(out).expanduser()
    scan = scan_dataset(src)
    check_out_dir(src, out)
    params = prep_params(spec, flip, near_duplicate_distance)
    key = source_key(scan, params)
    with locked(out):
        manifest = read_manifest(out)
        if manifest and _stored_key(out) == key and outputs_present(out, manifest):
            return refuse_if_strict(spec, src, result_from_manifest(out, manifest, reused=True))
        clean_stale(out)
        return refuse_if_strict(spec, src, _prepare(scan, out, spec, params, key, workers, reuse_from or out))


def unreadable_images(result: PrepareResult) -> list[dict[str, Any]]:
    """The skipped entries of images that could not be read (not duplicates or unsupported formats)."""
    return [s for s in result.skipped if s.get("reason") in SKIPPABLE]


def skipped_lines(result: PrepareResult) -> list[str]:
    """What a training run says about the files prepare left out: the unreadable images by name, the rest counted."""
    bad = unreadable_images(result)
    lines = []
    if bad:
        named = ", ".join(f"{s['file']} ({s['reason']})" for s in bad[:10]) + (", ..." if len(bad) > 10 else "")
        lines.append(f"dataset: skipped {len(bad)} unreadable image(s): {named}; training goes on with "
                     f"{result.num_sources} (dataset.strict: true refuses instead)")
    others = len(result.skipped) - len(bad)
    if others:
        lines.append(f"dataset: {others} {'other ' if bad else ''}file(s) skipped while preparing (duplicates, "
                     f"unsupported formats, links; see {result.manifest_path})")
    return lines


def refuse_if_strict(spec: JobSpec, src: Path, result: PrepareResult) -> PrepareResult:
    """Under dataset.strict an image that cannot be read is bad input (exit 2) naming the files; else the result."""
    bad = unreadable_images(result)
    if spec.dataset.strict and bad:
        shown = "; ".join(f"{s['file']} ({s['reason']}: {s['detail']})" for s in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise BadInputError(f"dataset.strict: {len(bad)} image(s) in {src} cannot be "
                            f"read: {shown}{more}",
                            hint="fix or remove them, or set dataset.strict: false to skip them and train on the rest")
    return result


def _stored_key(out: Path) -> str | None:
    try:
        return (out / SOURCE_KEY_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _prepare(scan: ScanResult, out: Path, spec: JobSpec, params: dict[str, Any], key: str, workers: int | None,
             reuse_from: Path) -> PrepareResult:
    cap = spec.dataset.caption
    rels = [f.rel for f in scan.images]
    blocking = [f for f in plan_captions(scan, rels, cap).findings if f.severity == "error"]
    if blocking:
        f = blocking[0]
        raise BadInputError(f"{scan.root / (f.file or '')}: {f.message}", hint=f.hint)
    stems = _allocate_stems(rels, params["flip"])
    reuse = _reuse_map(reuse_from, params)
    tmp = new_temp_dir(out)
    try:
        ctx = {"root": str(scan.root), "tmp": str(tmp), "params": params, "reuse": reuse}
        jobs = [(rel, stems[rel][0], stems[rel][1]) for rel in rels]
        results = map_files(process_image, jobs, shared=ctx, workers=workers)
        manifest = _finish(scan, tmp, spec, params, results)
        atomic_write_text(tmp / SOURCE_KEY_FILE, key + "\n", mode=FILE_MODE)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result_from_manifest(out, manifest, reused=False, images_reused=sum(1 for r in results if r.get("reused")))


def _finish(scan: ScanResult, tmp: Path, spec: JobSpec, params: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Drop duplicates, write captions and the manifest (last: it marks the folder complete)."""
    cap = spec.dataset.caption
    skipped = [{"file": f.rel, "reason": "unsupported_format", "detail": f"{f.ext} is not read by trainers"}
               for f in scan.unsupported]
    skipped += [{"file": rel, "reason": "symlink_broken" if why == "broken symlink" else "symlink_outside",
                 "detail": why} for rel, why in scan.skipped_links]
    skipped += [{"file": rel, "reason": "unreadable", "detail": "cannot be listed or read"} for rel in scan.unreadable]
    good = [r for r in results if "error" not in r]
    skipped += [{"file": r["rel"], "reason": r["error"], "detail": r["detail"]} for r in results if "error" in r]
    if not good:
        raise BadInputError(
            f"{scan.root}: none of the {len(results)} image(s) can be used: "
            + "; ".join(f"{s['file']} ({s['reason']})" for s in skipped[:5]),
            hint="run 'zlt dataset check' on it to see every problem",
        )
    dupes = find_duplicates([DupItem(r["rel"], r["source_sha256"], r.get("phash"), r.get("pixels", 0)) for r in good],
                            params["near_duplicate_distance"])
    dropped = {d.key: d for d in dupes}
    for d in dupes:
        kind = "duplicate" if d.kind == "exact" else "near_duplicate"
        detail = f"identical to {d.kept}" if d.kind == "exact" else f"looks like {d.kept} (pHash distance {d.distance})"
        skipped.append({"file": d.key, "reason": kind, "detail": detail, "duplicate_of": d.kept})
    kept = [r for r in good if r["rel"] not in dropped]
    for r in good:
        if r["rel"] in dropped:
            for name in (r.get("file"), r.get("flip_file")):
                if name:
                    (tmp / name).unlink(missing_ok=True)
    plan = plan_captions(scan, [f.rel for f in scan.images], cap, usable={r["rel"] for r in kept})
    entries = []
    for r in kept:
        caption = plan.by_image[r["rel"]].final
        outs = [(r["file"], r["sha256"], False)] + ([(r["flip_file"], r["flip_sha256"], True)] if r.get("flip_file") else [])
        for name, sha, flipped in outs:
            # plain writes: the whole folder becomes visible at once by swap_in
            (tmp / f"{name.rsplit('.', 1)[0]}.{cap.caption_ext}").write_text(caption, encoding="utf-8")
            entries.append({
                "source": r["rel"], "source_sha256": r["source_sha256"], "file": name, "sha256": sha,
                "width": r["width"], "height": r["height"], "caption": caption, "flipped": flipped,
                "phash": r.get("phash"), "source_pixels": r.get("pixels", 0),
            })
    entries.sort(key=lambda e: e["file"])
    skipped.sort(key=lambda s: s["file"])
    content = sorted([e["sha256"], e["caption"]] for e in entries)
    manifest = {
        "version": 1,
        "dataset_sha256": sha256_json({"version": 1, "params": params, "images": content}),
        "params": params,
        "source": str(scan.root),
        "images": entries,
        "skipped": skipped,
    }
    atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", mode=FILE_MODE)
    return manifest
