"""`zlt dataset check`: read every image and caption once and report every problem before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.dataset.captions import caption_files, plan_captions, shot_type
from zlt.dataset.dupes import NEAR_DUPLICATE_DISTANCE, DupItem, find_duplicates
from zlt.dataset.images import MAX_PIXELS, SIXTEEN_BIT_MODES, ImageProbe, decode
from zlt.dataset.parallel import map_files
from zlt.dataset.report import DatasetReport, Finding, ImageRecord, finding
from zlt.dataset.scan import ScanResult, scan_dataset
from zlt.spec import load_spec_data
from zlt.spec.models import JobSpec
from zlt.spec.presets import IMAGE_COUNT_ADVICE

EXTS_OF_FORMAT = {"JPEG": {".jpg", ".jpeg"}, "MPO": {".jpg", ".jpeg"}, "PNG": {".png"}, "WEBP": {".webp"}, "BMP": {".bmp"}}
# The character guide's shot mix, in percent of the images.
SHOT_MIX_ADVICE = {"close_up": (40, 50), "medium": (30, 40), "full_body": (10, 20)}
_ERROR_HINTS = {
    "zero_byte": "replace it with the real file or delete it",
    "corrupt": "re-export or re-download it, or delete it",
    "truncated": "the copy or download was cut short: fetch it again",
    "decompression_bomb": f"downscale it below {MAX_PIXELS / 1e6:.0f} MP",
    "unreadable": "make it readable (chmod +r) or remove it",
}
# What happens to an image that cannot be read, by dataset.strict (the verdict of render_text says the same).
_SKIP_NOTE = {False: "; prepare skips it", True: "; dataset.strict: true refuses to train until then"}
_ORIENTATION = {2: "mirrored", 3: "rotated 180", 4: "flipped", 5: "transposed", 6: "rotated 90 CW",
                7: "transversed", 8: "rotated 90 CCW"}


def default_spec() -> JobSpec:
    """The style preset's resolved defaults: what `check` and `prepare` use without `--spec`."""

    return load_spec_data({}).spec


def probe_file(root: str, rel: str) -> ImageProbe:
    """Read, hash, verify and decode one image (runs in a worker process)."""
    try:
        data = (Path(root) / rel).read_bytes()
    except OSError as e:
        return ImageProbe(bytes=0, error="unreadable", error_detail=f"cannot read it ({e.strerror or e})")
    probe, _image = decode(data)
    return probe


def _record(rel: str, probe: ImageProbe) -> ImageRecord:
    fields = probe.to_dict()
    for k in ("error", "error_detail", "decoder_warnings"):
        fields.pop(k)
    return ImageRecord(file=rel, status="ok" if probe.ok else "error", **fields)


def _image_findings(rel: str, probe: ImageProbe, spec: JobSpec) -> list[Finding]:
    if not probe.ok:
        code = probe.error or "corrupt"
        hint = _ERROR_HINTS.get(code, "") + _SKIP_NOTE[spec.dataset.strict]
        return [finding(code, probe.error_detail, rel, hint, skipped=True)]
    out: list[Finding] = []
    ext = "." + rel.rsplit(".", 1)[-1].lower()
    fmt = probe.format or "?"
    if ext not in EXTS_OF_FORMAT.get(fmt, set()):
        out.append(finding("extension_mismatch", f"the content is {fmt}, not what {ext} says; prepare re-encodes it", rel))
    if probe.frames > 1 and fmt != "MPO":
        out.append(finding("animated", f"{probe.frames} frames; only the first is used", rel))
    out.extend(finding("decoder_warning", msg, rel) for msg in probe.decoder_warnings)
    res = spec.dataset.resolution
    longest = max(probe.width, probe.height)
    if longest < res:
        hint = ("prepare upscales it (dataset.upscale: true)" if spec.dataset.upscale
                else "it trains at its own size; use a larger original, or set dataset.upscale: true")
        out.append(finding("below_resolution", f"{probe.width}x{probe.height}: longest side {longest} < {res}", rel, hint))
    if probe.exif_orientation != 1:
        how = _ORIENTATION.get(probe.exif_orientation, str(probe.exif_orientation))
        out.append(finding("exif_rotated", f"EXIF orientation {probe.exif_orientation} ({how}); "
                           f"{probe.width}x{probe.height} after rotation; prepare rotates the pixels", rel))
    if probe.alpha_used:
        out.append(finding("alpha_channel", f"{probe.mode} with transparent pixels; prepare composites them on white", rel))
    elif probe.has_alpha:
        out.append(finding("alpha_opaque", f"{probe.mode} alpha channel is fully opaque; prepare drops it", rel))
    mode = probe.mode or ""
    if mode == "CMYK":
        out.append(finding("needs_conversion", "CMYK pixels; prepare converts them to RGB", rel))
    elif mode in SIXTEEN_BIT_MODES:
        out.append(finding("needs_conversion", f"{mode} ({probe.bit_depth}-bit grayscale): a plain RGB convert clips "
                           "it to white; prepare scales it to 8-bit", rel))
    elif mode not in ("RGB", "RGBA", "L", "LA", "P", "PA", "1"):
        out.append(finding("needs_conversion", f"{mode} pixels; prepare converts them to RGB", rel))
    elif mode in ("L", "LA", "P", "PA", "1"):
        out.append(finding("grayscale_or_palette", f"{mode} image; prepare converts it to RGB", rel))
    if probe.bit_depth == 16 and mode not in SIXTEEN_BIT_MODES:
        out.append(finding("high_bit_depth", "16 bits per channel; prepare stores 8-bit", rel))
    return out


def _folder_findings(scan: ScanResult, spec: JobSpec) -> list[Finding]:
    out: list[Finding] = []
    for f in scan.unsupported:
        out.append(finding("unsupported_format", f"{f.ext} files are not read by trainers; skipped", f.rel,
                           "convert it to PNG or JPEG to train on it"))
    for rel, why in scan.skipped_links:
        out.append(finding("symlink_broken" if why == "broken symlink" else "symlink_outside", why, rel))
    for rel in scan.unreadable:
        out.append(finding("unreadable", "cannot be listed or read", rel,
                           _ERROR_HINTS["unreadable"] + _SKIP_NOTE[spec.dataset.strict], skipped=True))
    known = {f.rel for f in scan.images} | {f.rel for f in scan.unsupported} | caption_files(scan, spec.dataset.caption)
    others = [f.rel for f in scan.files if f.rel not in known]
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        out.append(finding("non_image_files", f"{len(others)} file(s) ignored: {shown}"))
    if scan.hidden:
        shown = ", ".join(scan.hidden[:5]) + (", ..." if len(scan.hidden) > 5 else "")
        out.append(finding("hidden_skipped", f"{len(scan.hidden)} hidden file(s) or cache folder(s) skipped: {shown}"))
    return out


def _stat(values: list[int]) -> dict[str, int] | None:
    return {"min": min(values), "max": max(values)} if values else None


def _shot_mix(spec: JobSpec, captions: list[str]) -> tuple[dict[str, Any] | None, list[Finding]]:
    if spec.preset != "character":
        return None, []
    mix = {"close_up": 0, "medium": 0, "full_body": 0, "unknown": 0}
    for text in captions:
        mix[shot_type(text) or "unknown"] += 1
    known = len(captions) - mix["unknown"]
    advice = " / ".join(f"{lo}-{hi}% {k.replace('_', '-')}" for k, (lo, hi) in SHOT_MIX_ADVICE.items())
    result = {**mix, "advice_percent": {k: list(v) for k, v in SHOT_MIX_ADVICE.items()}}
    if known == 0:
        return result, [finding("shot_mix_unknown", "shot mix unknown: no caption says close-up, medium shot or "
                                "full body (the guide advises " + advice + ")",
                                hint="mention the framing in captions to have it checked")]
    share = {k: round(100 * mix[k] / known) for k in SHOT_MIX_ADVICE}
    off = [k for k, (lo, hi) in SHOT_MIX_ADVICE.items() if not lo <= share[k] <= hi]
    if off:
        have = ", ".join(f"{share[k]}% {k.replace('_', '-')}" for k in SHOT_MIX_ADVICE)
        unknown = f" ({mix['unknown']} image(s) unknown)" if mix["unknown"] else ""
        return result, [finding("shot_mix", f"shot mix {have}{unknown}; the guide advises {advice}",
                                hint="add or remove images of the framing that is off")]
    return result, []


def build_report(scan: ScanResult, spec: JobSpec, probes: list[ImageProbe]) -> DatasetReport:
    """Turn the probes of `scan.images` (same order) into the report."""
    ds, cap = spec.dataset, spec.dataset.caption
    images = [f.rel for f in scan.images]
    records = [_record(rel, p) for rel, p in zip(images, probes, strict=True)]
    by_rel = {r.file: r for r in records}
    usable = {r.file for r in records if r.status == "ok"}
    findings = _folder_findings(scan, spec)
    for rel, probe in zip(images, probes, strict=True):
        findings.extend(_image_findings(rel, probe, spec))
    if not usable:
        findings.append(finding("no_usable_images", f"none of the {len(images)} image(s) can be used",
                                hint="replace the broken files listed above"))

    plan = plan_captions(scan, images, cap, usable=usable)
    findings.extend(plan.findings)
    for rel, info in plan.by_image.items():
        by_rel[rel].caption = info

    items = [DupItem(r.file, r.sha256, r.phash, r.width * r.height) for r in records if r.status == "ok"]
    dupes = find_duplicates(items, NEAR_DUPLICATE_DISTANCE)
    for d in dupes:
        rec = by_rel[d.key]
        rec.status, rec.duplicate_of = ("duplicate" if d.kind == "exact" else "near_duplicate"), d.kept
        if d.kind == "exact":
            findings.append(finding("duplicate_exact", f"identical to {d.kept}; prepare drops it", d.key))
        else:
            findings.append(finding("duplicate_near", f"looks like {d.kept} (pHash distance {d.distance}); "
                                    "prepare drops it", d.key, "delete one, or keep both if they differ on purpose"))
    unique = [r for r in records if r.status == "ok"]

    if cap.trigger_token:
        to_insert = sum(1 for r in records if r.status != "error" and r.caption.trigger == "inserted")
        if to_insert:
            where = "as a prefix" if cap.trigger_position == "prefix" else "as a suffix"
            findings.append(finding("trigger_missing", f"{to_insert} of {len(usable)} caption(s) lack {cap.trigger_token}; "
                                    f"prepare inserts it once {where}"))
    lo, hi = IMAGE_COUNT_ADVICE.get(spec.preset, (1, 10_000))
    n = len(unique)
    status = "low" if n < lo else "high" if n > hi else "ok"
    advice_text = f"{n} unique usable image(s); the {spec.preset} preset advises {lo}-{hi}"
    if status == "low" and usable:
        findings.append(finding("count_low", advice_text, hint="add more varied images"))
    elif status == "high":
        findings.append(finding("count_high", advice_text, hint="keep the best, most varied ones"))
    elif status == "ok":
        findings.append(finding("count_ok", advice_text))
    shot_mix, mix_findings = _shot_mix(spec, [r.caption.final for r in unique])
    findings.extend(mix_findings)

    sidecar_owner = {info.file: rel for rel, info in plan.by_image.items() if info.source == "sidecar"}
    for f in findings:  # caption findings name the caption file; link them to its image too
        owner = f.file if f.file in by_rel else sidecar_owner.get(f.file or "")
        if owner:
            by_rel[owner].codes.append(f.code)
    rank = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: rank[f.severity])

    ok = [r for r in records if r.status != "error"]
    sources = {k: 0 for k in ("sidecar", "filename", "metadata", "default", "none")}
    for r in ok:
        sources[r.caption.source] += 1
    formats: dict[str, int] = {}
    for r in ok:
        formats[r.format or "?"] = formats.get(r.format or "?", 0) + 1

    def count(code: str) -> int:
        return sum(1 for f in findings if f.code == code)

    totals: dict[str, Any] = {
        "files_scanned": len(scan.files),
        "images_found": len(records),
        "images_usable": len(ok),
        "images_unusable": len(records) - len(ok),
        "images_unique": n,
        "unsupported_files": len(scan.unsupported),
        "bytes_total": sum(r.bytes for r in records),
        "formats": dict(sorted(formats.items())),
        "shortest_side": _stat([min(r.width, r.height) for r in ok]),
        "longest_side": _stat([max(r.width, r.height) for r in ok]),
        "below_resolution": count("below_resolution"),
        "exif_rotated": count("exif_rotated"),
        "alpha": sum(1 for r in ok if r.has_alpha),
        "needs_conversion": count("needs_conversion"),
        "captions": {
            "by_source": sources,
            "missing": count("caption_missing"),
            "empty": count("caption_empty"),
            "long": count("caption_long"),
            "orphans": len(plan.orphans),
            "encoding_issues": count("caption_encoding"),
            "trigger_present": sum(1 for r in ok if r.caption.trigger == "present"),
            "trigger_placeholder": sum(1 for r in ok if r.caption.trigger == "placeholder"),
            "trigger_to_insert": sum(1 for r in ok if r.caption.trigger == "inserted"),
        },
        "duplicates": {
            "exact_files": sum(1 for d in dupes if d.kind == "exact"),
            "near_files": sum(1 for d in dupes if d.kind == "near"),
        },
        "advice": {"preset": spec.preset, "min": lo, "max": hi, "count": n, "status": status},
        "shot_mix": shot_mix,
        "samples_per_epoch": n * ds.repeats,
    }
    settings = {
        "preset": spec.preset, "resolution": ds.resolution, "upscale": ds.upscale, "center_crop": ds.center_crop,
        "caption_strategy": cap.strategy, "caption_ext": cap.caption_ext, "trigger_token": cap.trigger_token,
        "trigger_position": cap.trigger_position, "default_caption": cap.default_caption, "repeats": ds.repeats,
        "near_duplicate_distance": NEAR_DUPLICATE_DISTANCE, "max_pixels": MAX_PIXELS,
    }
    return DatasetReport(path=str(scan.root), settings=settings, images=records, findings=findings, totals=totals,
                         strict=ds.strict)


def check_dataset(path: Path, spec: JobSpec | None = None, *, workers: int | None = None) -> DatasetReport:
    """Scan `path` and report every problem. Raises BadInputError when the folder itself is unusable
    (missing, not a folder, unreadable, empty, no images)."""
    spec = spec or default_spec()
    scan = scan_dataset(Path(path))
    probes = map_files(probe_file, [f.rel for f in scan.images], shared=str(scan.root), workers=workers)
    return build_report(scan, spec, probes)
